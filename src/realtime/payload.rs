//! Wire helpers for payloads Open WebUI clients send in two forms.

use serde::{Deserialize, Deserializer, de};

/// Yjs bytes as a client sent them: a JSON array of numbers (`Array.from(uint8array)`, what
/// Open WebUI sends) or a Socket.IO binary attachment (a raw `Uint8Array`, what its older
/// client sends for a full-state re-seed). `Vec<u8>` only accepts the first and `Bytes` only
/// the second, so this goes through `deserialize_any` and takes both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YBytes {
    pub bytes: Vec<u8>,
    /// Whether it came as a binary attachment; echoes keep the sender's form.
    pub binary: bool,
}

/// An optional [`YBytes`] field (`update` may be absent or null in a content refresh).
///
/// `Option<YBytes>` does not work for binary attachments: socketioxide's parser hands
/// `deserialize_option` straight to serde_json, which then sees the attachment's placeholder
/// object. This type stays on the `deserialize_any` path and treats null as absent; pair it
/// with `#[serde(default)]` for a missing field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaybeYBytes(pub Option<YBytes>);

struct BytesVisitor;

impl<'de> de::Visitor<'de> for BytesVisitor {
    type Value = Option<YBytes>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of bytes (numbers 0-255) or a binary attachment")
    }

    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        // Cap the pre-allocation: the size hint comes from the client.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Some(YBytes { bytes, binary: false }))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(Some(YBytes { bytes: v.to_vec(), binary: true }))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(Some(YBytes { bytes: v, binary: true }))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

impl<'de> Deserialize<'de> for YBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BytesVisitor)?.ok_or_else(|| de::Error::custom("expected bytes, found null"))
    }
}

impl<'de> Deserialize<'de> for MaybeYBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BytesVisitor).map(MaybeYBytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_arrays_parse_and_out_of_range_numbers_fail() {
        let y: YBytes = serde_json::from_str("[0, 1, 255]").unwrap();
        assert_eq!(y, YBytes { bytes: vec![0, 1, 255], binary: false });
        assert!(serde_json::from_str::<YBytes>("[256]").is_err());
        assert!(serde_json::from_str::<YBytes>("[-1]").is_err());
        assert!(serde_json::from_str::<YBytes>("\"abc\"").is_err());
        assert!(serde_json::from_str::<YBytes>("{}").is_err());
        assert!(serde_json::from_str::<YBytes>("null").is_err());
        assert_eq!(serde_json::from_str::<MaybeYBytes>("null").unwrap(), MaybeYBytes(None));
    }
}
