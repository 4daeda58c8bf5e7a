//! A typing model for measurements: one client editing a real Yjs document the way
//! y-prosemirror writes Open WebUI's notes (an XmlFragment `prosemirror` of paragraph elements
//! holding XmlText). One small update per keystroke, every tenth keystroke a backspace, a new
//! paragraph every 60 characters. `tandem-loadgen` and the criterion benches share it, so both
//! measure the same updates.

use yrs::{
    Doc, GetString, ReadTxn, StateVector, Text, Transact, Update, XmlElementPrelim, XmlFragment, XmlFragmentRef,
    XmlTextPrelim, XmlTextRef, updates::decoder::Decode,
};

/// A client typing into its own paragraph.
pub struct Typist {
    doc: Doc,
    fragment: XmlFragmentRef,
    text: Option<XmlTextRef>,
    /// Characters in `text` (ASCII, so bytes = UTF-16 units).
    len: u32,
    keys: u64,
    line: u32,
}

/// Characters per paragraph before the typist presses Enter.
const LINE: u32 = 60;

impl Typist {
    /// A typist with a random client id, as a browser tab has.
    pub fn new() -> Self {
        Self::on(Doc::new())
    }

    /// A typist with a fixed client id, for reproducible updates.
    pub fn with_client_id(client_id: u64) -> Self {
        Self::on(Doc::with_client_id(client_id))
    }

    fn on(doc: Doc) -> Self {
        let fragment = doc.get_or_insert_xml_fragment("prosemirror");
        Self { doc, fragment, text: None, len: 0, keys: 0, line: 0 }
    }

    /// One keystroke as one update: a character at the end of the own paragraph, every tenth a
    /// backspace, and a new paragraph (Enter) every `LINE` characters.
    pub fn keystroke(&mut self) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        let k = self.keys;
        self.keys += 1;
        match &self.text {
            Some(text) if self.line < LINE => {
                if k % 10 == 9 && self.len > 0 {
                    text.remove_range(&mut txn, self.len - 1, 1);
                    self.len -= 1;
                } else {
                    let ch = (b'a' + (k % 26) as u8) as char;
                    text.insert(&mut txn, self.len, ch.encode_utf8(&mut [0; 4]));
                    self.len += 1;
                    self.line += 1;
                }
            }
            _ => {
                let paragraph = self.fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
                self.text = Some(paragraph.push_back(&mut txn, XmlTextPrelim::new("")));
                self.len = 0;
                self.line = 0;
            }
        }
        txn.encode_update_v1()
    }

    /// Churn that keeps the content's size: a character typed, then deleted again.
    pub fn churn(&mut self) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        let k = self.keys;
        self.keys += 1;
        let text = match &self.text {
            Some(text) => text.clone(),
            None => {
                let paragraph = self.fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
                let text = paragraph.push_back(&mut txn, XmlTextPrelim::new(""));
                self.text = Some(text.clone());
                self.len = 0;
                return txn.encode_update_v1();
            }
        };
        if k.is_multiple_of(2) {
            text.insert(&mut txn, self.len, "x");
            self.len += 1;
        } else if self.len > 0 {
            text.remove_range(&mut txn, self.len - 1, 1);
            self.len -= 1;
        }
        txn.encode_update_v1()
    }

    /// Applies another client's update.
    pub fn apply(&self, update: &[u8]) -> anyhow::Result<()> {
        let update = Update::decode_v1(update)?;
        self.doc.transact_mut().apply_update(update)?;
        Ok(())
    }

    /// The document's text, paragraphs concatenated.
    pub fn plain_text(&self) -> String {
        self.fragment.get_string(&self.doc.transact())
    }

    /// State vector as a sorted list, comparable across documents.
    pub fn state_vector(&self) -> Vec<(u64, u32)> {
        let sv = self.doc.transact().state_vector();
        let mut v: Vec<(u64, u32)> = sv.iter().map(|(c, k)| (c.get(), *k)).collect();
        v.sort_unstable();
        v
    }

    /// The whole document as one Yjs v1 update.
    pub fn full_state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }
}

impl Default for Typist {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Typist;

    #[test]
    fn another_client_applying_every_keystroke_converges() {
        let mut alice = Typist::with_client_id(1);
        let bob = Typist::with_client_id(2);
        for _ in 0..250 {
            bob.apply(&alice.keystroke()).unwrap();
        }
        assert!(alice.plain_text().len() > 150, "250 keystrokes leave text: {:?}", alice.plain_text());
        assert_eq!(bob.plain_text(), alice.plain_text());
        assert_eq!(bob.state_vector(), alice.state_vector());

        let late = Typist::new();
        late.apply(&alice.full_state()).unwrap();
        assert_eq!(late.plain_text(), alice.plain_text());
    }

    #[test]
    fn churn_grows_history_but_keeps_the_content_size() {
        let mut typist = Typist::with_client_id(1);
        for _ in 0..61 {
            typist.keystroke();
        }
        let size = typist.full_state().len();
        let length = typist.plain_text().len();
        for _ in 0..1000 {
            typist.churn();
        }
        assert_eq!(typist.plain_text().len(), length);
        assert!(typist.full_state().len() < size * 3, "{} vs {size}", typist.full_state().len());
    }
}
