//! A document's content outside Yjs: JSON of its root types, plain text and HTML of the
//! `prosemirror` fragment, and the reverse; plus [`replace_content`], which turns one document
//! into a copy of another as a forward change.
//!
//! Root types of a document loaded from an update have no declared type (Yjs updates do not
//! carry it), so [`classify`] infers it from the content: XML children mean an XML fragment,
//! key-value entries a map, character runs a text, anything else an array.

use std::{collections::HashMap, sync::Arc};

use serde_json::{Map, Value, json};
use yrs::{
    Any, Array, ArrayRef, Doc, GetString, Map as _, MapRef, Out, ReadTxn, StateVector, Text, TextRef, Transact,
    TransactionMut, Update, WriteTxn, Xml, XmlElementPrelim, XmlElementRef, XmlFragment, XmlFragmentRef, XmlOut,
    XmlTextPrelim, XmlTextRef,
    block::ClientID,
    branch::BranchPtr,
    types::{AsPrelim, Attrs, Delta, ToJson, text::YChange, xml::XmlIn},
    updates::{decoder::Decode, encoder::Encode},
};

/// The fragment Open WebUI's notes and the web demo bind their editor to.
pub const PROSEMIRROR: &str = "prosemirror";

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("not a Yjs update: {0}")]
    Yjs(String),
    #[error("invalid JSON document: {0}")]
    Json(String),
    #[error("invalid HTML: {0}")]
    Html(String),
}

/// What a root type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    XmlFragment,
    Text,
    Map,
    Array,
}

impl RootKind {
    fn name(self) -> &'static str {
        match self {
            RootKind::XmlFragment => "xml_fragment",
            RootKind::Text => "text",
            RootKind::Map => "map",
            RootKind::Array => "array",
        }
    }
}

/// A document with the given client id, holding `state` (a Yjs v1 update).
pub fn doc_from_state(state: &[u8]) -> Result<Doc, ContentError> {
    let doc = Doc::new();
    {
        let update = Update::decode_v1(state).map_err(|e| ContentError::Yjs(e.to_string()))?;
        let mut txn = doc.transact_mut();
        txn.apply_update(update).map_err(|e| ContentError::Yjs(e.to_string()))?;
    }
    Ok(doc)
}

/// The full state of a document as a Yjs v1 update.
pub fn state_of(doc: &Doc) -> Vec<u8> {
    doc.transact().encode_state_as_update_v1(&StateVector::default())
}

/// The document's non-empty root types, by name, with their inferred kinds.
pub fn roots<T: ReadTxn>(txn: &T) -> Vec<(String, RootKind, BranchPtr)> {
    let mut roots: Vec<(String, RootKind, BranchPtr)> = txn
        .root_refs()
        .filter_map(|(name, out)| {
            let ptr = branch_of(&out)?;
            classify(txn, ptr).map(|kind| (name.to_string(), kind, ptr))
        })
        .collect();
    roots.sort_by(|a, b| a.0.cmp(&b.0));
    roots
}

fn branch_of(out: &Out) -> Option<BranchPtr> {
    Some(match out {
        Out::YText(t) => branch(t),
        Out::YArray(a) => branch(a),
        Out::YMap(m) => branch(m),
        Out::YXmlFragment(f) => branch(f),
        Out::YXmlElement(e) => branch(e),
        Out::YXmlText(t) => branch(t),
        Out::UndefinedRef(ptr) => *ptr,
        _ => return None,
    })
}

fn branch<R: AsRef<yrs::branch::Branch>>(shared: &R) -> BranchPtr {
    BranchPtr::from(shared.as_ref())
}

/// Infers a root's kind from its content; `None` when it holds nothing.
pub fn classify<T: ReadTxn>(txn: &T, ptr: BranchPtr) -> Option<RootKind> {
    use yrs::types::TypeRef;
    match ptr.type_ref() {
        TypeRef::XmlFragment | TypeRef::XmlElement(_) => return non_empty(txn, ptr, RootKind::XmlFragment),
        TypeRef::Text | TypeRef::XmlText => return non_empty(txn, ptr, RootKind::Text),
        TypeRef::Map => return non_empty(txn, ptr, RootKind::Map),
        TypeRef::Array => return non_empty(txn, ptr, RootKind::Array),
        _ => {}
    }
    let values: Vec<Out> = ArrayRef::from(ptr).iter(txn).collect();
    if values.is_empty() {
        return (MapRef::from(ptr).len(txn) > 0).then_some(RootKind::Map);
    }
    if values.iter().any(|v| matches!(v, Out::YXmlElement(_) | Out::YXmlText(_) | Out::YXmlFragment(_))) {
        return Some(RootKind::XmlFragment);
    }
    // Text is stored as character runs, which read back one character at a time; a Y.Array of
    // one-character strings would look the same and is taken for text.
    let all_chars = values.iter().all(|v| matches!(v, Out::Any(Any::String(s)) if s.chars().count() == 1));
    Some(if all_chars { RootKind::Text } else { RootKind::Array })
}

fn non_empty<T: ReadTxn>(txn: &T, ptr: BranchPtr, kind: RootKind) -> Option<RootKind> {
    let len = match kind {
        RootKind::Map => MapRef::from(ptr).len(txn),
        _ => ArrayRef::from(ptr).len(txn).max(TextRef::from(ptr).len(txn)),
    };
    (len > 0).then_some(kind)
}

/// Makes `doc`'s content equal to `target`'s as one forward change in `txn`: everything in the
/// document is deleted and the target's root types are copied in with new ids. Clients holding
/// the old state converge to the target without duplicates, and can keep editing.
pub fn replace_content(txn: &mut TransactionMut, target: &Doc) -> Result<(), ContentError> {
    delete_everything(txn)?;
    let source = target.transact();
    for (name, kind, ptr) in roots(&source) {
        match kind {
            RootKind::XmlFragment => {
                let from = XmlFragmentRef::from(ptr);
                let to = txn.get_or_insert_xml_fragment(name.as_str());
                for child in from.children(&source) {
                    let prelim: XmlIn = match child {
                        XmlOut::Element(e) => e.as_prelim(&source).into(),
                        XmlOut::Text(t) => t.as_prelim(&source).into(),
                        XmlOut::Fragment(f) => f.as_prelim(&source).into(),
                    };
                    to.push_back(txn, prelim);
                }
            }
            RootKind::Text => {
                let from = TextRef::from(ptr);
                let to = txn.get_or_insert_text(name.as_str());
                let delta: Vec<Delta<yrs::In>> = from
                    .diff(&source, YChange::identity)
                    .into_iter()
                    .map(|d| Delta::Inserted(d.insert.as_prelim(&source), d.attributes))
                    .collect();
                to.apply_delta(txn, delta);
            }
            RootKind::Map => {
                let from = MapRef::from(ptr);
                let to = txn.get_or_insert_map(name.as_str());
                let entries: Vec<(String, yrs::In)> =
                    from.iter(&source).map(|(k, v)| (k.to_string(), v.as_prelim(&source))).collect();
                for (key, value) in entries {
                    to.insert(txn, key, value);
                }
            }
            RootKind::Array => {
                let from = ArrayRef::from(ptr);
                let to = txn.get_or_insert_array(name.as_str());
                let values: Vec<yrs::In> = from.iter(&source).map(|v| v.as_prelim(&source)).collect();
                for value in values {
                    to.push_back(txn, value);
                }
            }
        }
    }
    Ok(())
}

/// Deletes every item the document has ever held, whatever its type, by applying a delete set
/// that covers every client's whole clock range.
fn delete_everything(txn: &mut TransactionMut) -> Result<(), ContentError> {
    let known = txn.state_vector();
    let mut ids = yrs::IdSet::new();
    for (client, clock) in known.iter() {
        if *clock > 0 {
            ids.insert(yrs::ID::new(*client as ClientID, 0), *clock);
        }
    }
    // A v1 update with no structs, only this delete set.
    use yrs::{
        encoding::write::Write,
        updates::encoder::{Encoder, EncoderV1},
    };
    let mut encoder = EncoderV1::new();
    encoder.write_var(0u32);
    ids.encode(&mut encoder);
    let update = Update::decode_v1(&encoder.to_vec()).map_err(|e| ContentError::Yjs(e.to_string()))?;
    txn.apply_update(update).map_err(|e| ContentError::Yjs(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Formats

/// The ways a document can leave and enter tandem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A Yjs v1 update holding the whole document.
    Ybin,
    /// The root types as JSON (see [`to_json`]).
    Json,
    /// Plain text of the `prosemirror` fragment.
    Text,
    /// HTML of the `prosemirror` fragment.
    Html,
}

impl Format {
    /// Guesses a format from a file name's extension.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "ybin" | "yjs" | "bin" => Some(Format::Ybin),
            "json" => Some(Format::Json),
            "txt" | "text" | "md" => Some(Format::Text),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ybin => "application/octet-stream",
            Format::Json => "application/json",
            Format::Text => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// The document in `format`.
pub fn render(doc: &Doc, format: Format) -> Vec<u8> {
    match format {
        Format::Ybin => state_of(doc),
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(&to_json(doc)).unwrap_or_default();
            out.push(b'\n');
            out
        }
        Format::Text => to_text(doc).into_bytes(),
        Format::Html => to_html(doc).into_bytes(),
    }
}

/// Reads a document given in `format`; `schema` names the nodes of text and HTML imports.
pub fn parse(bytes: &[u8], format: Format, schema: Schema) -> Result<Doc, ContentError> {
    let utf8 = || std::str::from_utf8(bytes).map_err(|e| ContentError::Json(format!("not UTF-8: {e}")));
    match format {
        Format::Ybin => doc_from_state(bytes),
        Format::Json => from_json(&serde_json::from_slice(bytes).map_err(|e| ContentError::Json(e.to_string()))?),
        Format::Text => Ok(from_text(utf8()?, schema)),
        Format::Html => from_html(utf8()?, schema),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// `{"<root>": {"type": "xml_fragment", "children": [...]}, "<root>": {"type": "text",
/// "delta": [...]}, ...}`. XML nodes are `{"tag", "attrs", "children"}` or `{"text": delta}`;
/// deltas are `[{"insert": "...", "attributes"?: {...}}]`. Shared types nested inside maps and
/// arrays are exported as plain JSON.
pub fn to_json(doc: &Doc) -> Value {
    let txn = doc.transact();
    let mut out = Map::new();
    for (name, kind, ptr) in roots(&txn) {
        let value = match kind {
            RootKind::XmlFragment => json!({
                "type": kind.name(),
                "children": XmlFragmentRef::from(ptr).children(&txn).map(|c| xml_node_json(&txn, c)).collect::<Vec<_>>(),
            }),
            RootKind::Text => json!({ "type": kind.name(), "delta": delta_json(&txn, &TextRef::from(ptr)) }),
            RootKind::Map => {
                let map: Map<String, Value> =
                    MapRef::from(ptr).iter(&txn).map(|(k, v)| (k.to_string(), out_json(&txn, &v))).collect();
                json!({ "type": kind.name(), "value": map })
            }
            RootKind::Array => json!({
                "type": kind.name(),
                "value": ArrayRef::from(ptr).iter(&txn).map(|v| out_json(&txn, &v)).collect::<Vec<_>>(),
            }),
        };
        out.insert(name, value);
    }
    Value::Object(out)
}

fn any_json(any: &Any) -> Value {
    let mut text = String::new();
    any.to_json(&mut text);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn json_any(value: &Value) -> Any {
    // Serialising a serde_json value always yields valid JSON, which Any always parses.
    Any::from_json(&value.to_string()).unwrap_or(Any::Null)
}

fn out_json<T: ReadTxn>(txn: &T, out: &Out) -> Value {
    match out {
        Out::Any(any) => any_json(any),
        other => any_json(&other.to_json(txn)),
    }
}

fn attrs_json(attrs: &Attrs) -> Value {
    let mut sorted: Vec<_> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(sorted.into_iter().map(|(k, v)| (k.to_string(), any_json(v))).collect())
}

fn delta_json<T: ReadTxn, X: Text>(txn: &T, text: &X) -> Vec<Value> {
    text.diff(txn, YChange::identity)
        .into_iter()
        .map(|d| {
            let mut chunk = Map::new();
            chunk.insert("insert".into(), out_json(txn, &d.insert));
            if let Some(attrs) = d.attributes.filter(|a| !a.is_empty()) {
                chunk.insert("attributes".into(), attrs_json(&attrs));
            }
            Value::Object(chunk)
        })
        .collect()
}

fn xml_node_json<T: ReadTxn>(txn: &T, node: XmlOut) -> Value {
    match node {
        XmlOut::Element(e) => {
            let mut attrs: Vec<(String, Value)> =
                e.attributes(txn).map(|(k, v)| (k.to_string(), out_json(txn, &v))).collect();
            attrs.sort_by(|a, b| a.0.cmp(&b.0));
            json!({
                "tag": e.tag().to_string(),
                "attrs": Value::Object(attrs.into_iter().collect()),
                "children": e.children(txn).map(|c| xml_node_json(txn, c)).collect::<Vec<_>>(),
            })
        }
        XmlOut::Text(t) => json!({ "text": delta_json(txn, &t) }),
        XmlOut::Fragment(f) => json!({
            "tag": "",
            "attrs": {},
            "children": f.children(txn).map(|c| xml_node_json(txn, c)).collect::<Vec<_>>(),
        }),
    }
}

/// Builds a document from [`to_json`]'s format.
pub fn from_json(value: &Value) -> Result<Doc, ContentError> {
    let bad = |m: &str| ContentError::Json(m.to_string());
    let roots = value.as_object().ok_or_else(|| bad("expected an object of root types"))?;
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for (name, root) in roots {
            let kind = root.get("type").and_then(Value::as_str).ok_or_else(|| bad("each root needs a \"type\""))?;
            match kind {
                "xml_fragment" => {
                    let fragment = txn.get_or_insert_xml_fragment(name.as_str());
                    let children = root
                        .get("children")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad("xml_fragment needs \"children\""))?;
                    for child in children {
                        push_xml_json(&mut txn, &fragment, child)?;
                    }
                }
                "text" => {
                    let text = txn.get_or_insert_text(name.as_str());
                    let delta =
                        root.get("delta").and_then(Value::as_array).ok_or_else(|| bad("text needs \"delta\""))?;
                    insert_delta(&mut txn, &text, delta)?;
                }
                "map" => {
                    let map = txn.get_or_insert_map(name.as_str());
                    let entries = root
                        .get("value")
                        .and_then(Value::as_object)
                        .ok_or_else(|| bad("map needs an object \"value\""))?;
                    for (k, v) in entries {
                        map.insert(&mut txn, k.as_str(), json_any(v));
                    }
                }
                "array" => {
                    let array = txn.get_or_insert_array(name.as_str());
                    let values = root
                        .get("value")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad("array needs an array \"value\""))?;
                    for v in values {
                        array.push_back(&mut txn, json_any(v));
                    }
                }
                other => return Err(ContentError::Json(format!("unknown root type {other:?}"))),
            }
        }
    }
    Ok(doc)
}

fn insert_delta<X: Text>(txn: &mut TransactionMut, text: &X, delta: &[Value]) -> Result<(), ContentError> {
    for chunk in delta {
        let insert = chunk.get("insert").ok_or_else(|| ContentError::Json("delta chunks need \"insert\"".into()))?;
        let attrs: Option<Attrs> = chunk
            .get("attributes")
            .and_then(Value::as_object)
            .map(|a| a.iter().map(|(k, v)| (Arc::<str>::from(k.as_str()), json_any(v))).collect());
        let at = text.len(txn);
        match (insert, attrs) {
            (Value::String(s), Some(attrs)) => text.insert_with_attributes(txn, at, s, attrs),
            // Explicitly unformatted, rather than inheriting the previous chunk's marks.
            (Value::String(s), None) => text.insert_with_attributes(txn, at, s, Attrs::new()),
            (other, Some(attrs)) => {
                text.insert_embed_with_attributes(txn, at, json_any(other), attrs);
            }
            (other, None) => {
                text.insert_embed(txn, at, json_any(other));
            }
        }
    }
    Ok(())
}

fn push_xml_json<F: XmlFragment>(txn: &mut TransactionMut, parent: &F, node: &Value) -> Result<(), ContentError> {
    if let Some(delta) = node.get("text") {
        let text: XmlTextRef = parent.push_back(txn, XmlTextPrelim::new(""));
        let delta = delta.as_array().ok_or_else(|| ContentError::Json("\"text\" must be a delta array".into()))?;
        return insert_delta(txn, &text, delta);
    }
    let tag = node
        .get("tag")
        .and_then(Value::as_str)
        .ok_or_else(|| ContentError::Json("XML nodes need \"tag\" or \"text\"".into()))?;
    let element: XmlElementRef = parent.push_back(txn, XmlElementPrelim::empty(tag));
    if let Some(attrs) = node.get("attrs").and_then(Value::as_object) {
        for (k, v) in attrs {
            element.insert_attribute(txn, k.as_str(), json_any(v));
        }
    }
    for child in node.get("children").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        push_xml_json(txn, &element, child)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Plain text

/// Block elements whose content ends with a line break in plain text.
fn is_block(tag: &str) -> bool {
    !matches!(tag, "hardBreak" | "hard_break" | "image" | "mention")
}

/// The `prosemirror` fragment as plain text (a line per block); without one, the text roots.
pub fn to_text(doc: &Doc) -> String {
    let txn = doc.transact();
    let mut out = String::new();
    let roots = roots(&txn);
    if let Some((_, _, ptr)) = roots.iter().find(|(n, k, _)| n == PROSEMIRROR && *k == RootKind::XmlFragment) {
        for child in XmlFragmentRef::from(*ptr).children(&txn) {
            text_of(&txn, child, &mut out);
        }
    } else {
        for (_, kind, ptr) in &roots {
            match kind {
                RootKind::Text => {
                    out.push_str(&TextRef::from(*ptr).get_string(&txn));
                    out.push('\n');
                }
                RootKind::XmlFragment => {
                    for child in XmlFragmentRef::from(*ptr).children(&txn) {
                        text_of(&txn, child, &mut out);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn text_of<T: ReadTxn>(txn: &T, node: XmlOut, out: &mut String) {
    match node {
        XmlOut::Text(t) => {
            // `get_string` would render formatting as tags; the delta's strings are the text.
            for chunk in t.diff(txn, YChange::identity) {
                if let Out::Any(Any::String(s)) = chunk.insert {
                    out.push_str(&s);
                }
            }
        }
        XmlOut::Element(e) => {
            let tag = e.tag().to_string();
            if matches!(tag.as_str(), "hardBreak" | "hard_break") {
                out.push('\n');
                return;
            }
            let mut has_blocks = false;
            for child in e.children(txn) {
                has_blocks |= matches!(&child, XmlOut::Element(c) if is_block(c.tag()));
                text_of(txn, child, out);
            }
            if is_block(&tag) && !has_blocks {
                out.push('\n');
            }
        }
        XmlOut::Fragment(f) => {
            for child in f.children(txn) {
                text_of(txn, child, out);
            }
        }
    }
}

/// A document whose `prosemirror` fragment holds one paragraph per line of `text`.
pub fn from_text(text: &str, schema: Schema) -> Doc {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        let fragment = txn.get_or_insert_xml_fragment(PROSEMIRROR);
        let text = text.strip_suffix('\n').unwrap_or(text);
        for line in text.split('\n') {
            let p: XmlElementRef = fragment.push_back(&mut txn, XmlElementPrelim::empty(schema.node("paragraph")));
            if !line.is_empty() {
                p.push_back(&mut txn, XmlTextPrelim::new(line));
            }
        }
    }
    doc
}

// ---------------------------------------------------------------------------------------------
// HTML

/// Node and mark names differ between Tiptap (Open WebUI's editor) and ProseMirror's basic
/// schema (the web demo); imports write the one the document's editor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `bulletList`, `listItem`, `codeBlock`, marks `bold`, `italic`, ...
    Tiptap,
    /// `bullet_list`, `list_item`, `code_block`, marks `strong`, `em`, ...
    Basic,
}

impl Schema {
    /// Open WebUI's notes (`note:…`) are edited with Tiptap; everything else with the basic schema.
    pub fn for_document(doc_id: &str) -> Self {
        if doc_id.starts_with("note:") { Schema::Tiptap } else { Schema::Basic }
    }

    fn node(self, basic: &'static str) -> &'static str {
        if self == Schema::Basic {
            return basic;
        }
        match basic {
            "bullet_list" => "bulletList",
            "ordered_list" => "orderedList",
            "list_item" => "listItem",
            "code_block" => "codeBlock",
            "horizontal_rule" => "horizontalRule",
            "hard_break" => "hardBreak",
            other => other,
        }
    }

    fn mark(self, basic: &'static str) -> &'static str {
        if self == Schema::Basic {
            return basic;
        }
        match basic {
            "strong" => "bold",
            "em" => "italic",
            "s" => "strike",
            other => other,
        }
    }
}

/// The `prosemirror` fragment as HTML (both naming schemes understood).
pub fn to_html(doc: &Doc) -> String {
    let txn = doc.transact();
    let mut out = String::new();
    if let Some(fragment) = txn.get_xml_fragment(PROSEMIRROR) {
        for child in fragment.children(&txn) {
            html_of(&txn, child, &mut out);
        }
    }
    out
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn attr_str<T: ReadTxn>(txn: &T, e: &XmlElementRef, name: &str) -> Option<String> {
    e.get_attribute(txn, name).map(|v| match v {
        Out::Any(Any::String(s)) => s.to_string(),
        Out::Any(Any::Number(n)) => n.to_string(),
        other => other.to_string(txn),
    })
}

fn html_of<T: ReadTxn>(txn: &T, node: XmlOut, out: &mut String) {
    let element = match node {
        XmlOut::Text(t) => return text_html(txn, &t, out),
        XmlOut::Fragment(f) => {
            for child in f.children(txn) {
                html_of(txn, child, out);
            }
            return;
        }
        XmlOut::Element(e) => e,
    };
    let tag = element.tag().to_string();
    let (open, close): (String, &str) = match tag.as_str() {
        "paragraph" => ("<p>".into(), "</p>"),
        "heading" => {
            let level = attr_str(txn, &element, "level").and_then(|l| l.parse::<u8>().ok()).unwrap_or(1).clamp(1, 6);
            return wrap(txn, &element, &format!("<h{level}>"), &format!("</h{level}>"), out);
        }
        "blockquote" => ("<blockquote>".into(), "</blockquote>"),
        "bulletList" | "bullet_list" | "taskList" => ("<ul>".into(), "</ul>"),
        "orderedList" | "ordered_list" => ("<ol>".into(), "</ol>"),
        "listItem" | "list_item" | "taskItem" => ("<li>".into(), "</li>"),
        "codeBlock" | "code_block" => ("<pre><code>".into(), "</code></pre>"),
        "horizontalRule" | "horizontal_rule" => return out.push_str("<hr>"),
        "hardBreak" | "hard_break" => return out.push_str("<br>"),
        "image" => {
            out.push_str("<img");
            for attr in ["src", "alt", "title"] {
                if let Some(v) = attr_str(txn, &element, attr) {
                    out.push_str(&format!(" {attr}=\""));
                    escape(&v, out);
                    out.push('"');
                }
            }
            out.push('>');
            return;
        }
        "table" => ("<table>".into(), "</table>"),
        "tableRow" | "table_row" => ("<tr>".into(), "</tr>"),
        "tableCell" | "table_cell" => ("<td>".into(), "</td>"),
        "tableHeader" | "table_header" => ("<th>".into(), "</th>"),
        other => {
            let mut open = String::from("<div data-type=\"");
            escape(other, &mut open);
            open.push_str("\">");
            (open, "</div>")
        }
    };
    wrap(txn, &element, &open, close, out);
}

fn wrap<T: ReadTxn>(txn: &T, element: &XmlElementRef, open: &str, close: &str, out: &mut String) {
    out.push_str(open);
    for child in element.children(txn) {
        html_of(txn, child, out);
    }
    out.push_str(close);
}

fn text_html<T: ReadTxn>(txn: &T, text: &XmlTextRef, out: &mut String) {
    for chunk in text.diff(txn, YChange::identity) {
        let Out::Any(Any::String(s)) = &chunk.insert else { continue };
        let mut marks: Vec<(String, Option<String>)> = chunk
            .attributes
            .map(|attrs| {
                attrs
                    .iter()
                    .map(|(k, v)| {
                        let href = match v {
                            Any::Map(m) => m
                                .get("href")
                                .and_then(|h| if let Any::String(h) = h { Some(h.to_string()) } else { None }),
                            _ => None,
                        };
                        (k.to_string(), href)
                    })
                    .collect()
            })
            .unwrap_or_default();
        marks.sort();
        let mut closes = Vec::new();
        for (mark, href) in &marks {
            let (open, close) = match mark.as_str() {
                "bold" | "strong" => ("<strong>".to_string(), "</strong>"),
                "italic" | "em" => ("<em>".to_string(), "</em>"),
                "underline" => ("<u>".to_string(), "</u>"),
                "strike" | "s" | "strikethrough" => ("<s>".to_string(), "</s>"),
                "code" => ("<code>".to_string(), "</code>"),
                "subscript" => ("<sub>".to_string(), "</sub>"),
                "superscript" => ("<sup>".to_string(), "</sup>"),
                "highlight" => ("<mark>".to_string(), "</mark>"),
                "link" => {
                    let mut a = String::from("<a href=\"");
                    escape(href.as_deref().unwrap_or(""), &mut a);
                    a.push_str("\">");
                    (a, "</a>")
                }
                _ => continue,
            };
            out.push_str(&open);
            closes.push(close);
        }
        escape(s, out);
        for close in closes.into_iter().rev() {
            out.push_str(close);
        }
    }
}

/// A document whose `prosemirror` fragment holds the given HTML, understood as far as the
/// editors' schemas go (paragraphs, headings, lists, quotes, code, rules, breaks, images,
/// tables; bold, italic, underline, strike, code, links). Unknown tags keep their text.
pub fn from_html(html: &str, schema: Schema) -> Result<Doc, ContentError> {
    let tree = html::parse(html).map_err(ContentError::Html)?;
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        let fragment = txn.get_or_insert_xml_fragment(PROSEMIRROR);
        let mut builder = HtmlBuilder { schema, marks: Vec::new() };
        builder.blocks(&mut txn, &fragment, &tree);
    }
    Ok(doc)
}

struct HtmlBuilder {
    schema: Schema,
    /// Marks of the inline elements we are inside of.
    marks: Vec<(Arc<str>, Any)>,
}

impl HtmlBuilder {
    /// Adds block content; loose inline content is gathered into paragraphs.
    fn blocks<F: XmlFragment>(&mut self, txn: &mut TransactionMut, parent: &F, nodes: &[html::Node]) {
        let mut loose: Vec<&html::Node> = Vec::new();
        for node in nodes {
            if let Some(tag) = node.block_tag() {
                self.flush_paragraph(txn, parent, &mut loose);
                self.block(txn, parent, tag, node);
            } else if !node.is_blank_text() || !loose.is_empty() {
                loose.push(node);
            }
        }
        self.flush_paragraph(txn, parent, &mut loose);
    }

    fn flush_paragraph<F: XmlFragment>(&mut self, txn: &mut TransactionMut, parent: &F, loose: &mut Vec<&html::Node>) {
        if loose.iter().all(|n| n.is_blank_text()) {
            loose.clear();
            return;
        }
        let p: XmlElementRef = parent.push_back(txn, XmlElementPrelim::empty(self.schema.node("paragraph")));
        let nodes: Vec<html::Node> = loose.drain(..).cloned().collect();
        self.inline(txn, &p, &nodes);
    }

    fn block<F: XmlFragment>(&mut self, txn: &mut TransactionMut, parent: &F, tag: &str, node: &html::Node) {
        let children = node.children();
        let element = |txn: &mut TransactionMut, name: &'static str| -> XmlElementRef {
            parent.push_back(txn, XmlElementPrelim::empty(name))
        };
        match tag {
            "p" => {
                let p = element(txn, self.schema.node("paragraph"));
                self.inline(txn, &p, children);
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let h = element(txn, "heading");
                let level: i64 = tag[1..].parse().unwrap_or(1);
                h.insert_attribute(txn, "level", Any::from(level as f64));
                self.inline(txn, &h, children);
            }
            "ul" | "ol" => {
                let list = element(txn, self.schema.node(if tag == "ul" { "bullet_list" } else { "ordered_list" }));
                for item in children.iter().filter(|c| c.tag() == Some("li")) {
                    let li: XmlElementRef = list.push_back(txn, XmlElementPrelim::empty(self.schema.node("list_item")));
                    self.blocks(txn, &li, item.children());
                }
            }
            "li" => {
                let li = element(txn, self.schema.node("list_item"));
                self.blocks(txn, &li, children);
            }
            "blockquote" => {
                let q = element(txn, "blockquote");
                self.blocks(txn, &q, children);
            }
            "pre" => {
                let code = element(txn, self.schema.node("code_block"));
                let text = node.text_content();
                if !text.is_empty() {
                    code.push_back(txn, XmlTextPrelim::new(text));
                }
            }
            "hr" => {
                element(txn, self.schema.node("horizontal_rule"));
            }
            "table" | "thead" | "tbody" | "tfoot" => {
                let target = if tag == "table" { Some(element(txn, "table")) } else { None };
                match target {
                    Some(table) => self.blocks(txn, &table, children),
                    None => self.blocks(txn, parent, children),
                }
            }
            "tr" => {
                let row = element(txn, if self.schema == Schema::Basic { "table_row" } else { "tableRow" });
                self.blocks(txn, &row, children);
            }
            "td" | "th" => {
                let name = match (tag, self.schema) {
                    ("td", Schema::Basic) => "table_cell",
                    ("td", Schema::Tiptap) => "tableCell",
                    (_, Schema::Basic) => "table_header",
                    (_, Schema::Tiptap) => "tableHeader",
                };
                let cell = element(txn, name);
                self.blocks(txn, &cell, children);
            }
            // div, section, article, body, html, ...: transparent containers.
            _ => self.blocks(txn, parent, children),
        }
    }

    fn inline(&mut self, txn: &mut TransactionMut, parent: &XmlElementRef, nodes: &[html::Node]) {
        for node in nodes {
            match node {
                html::Node::Text(text) => {
                    let mut text = collapse_whitespace(text);
                    // Whitespace at the start of a block is layout, not content.
                    if parent.len(txn) == 0 {
                        text = text.trim_start().to_string();
                    }
                    if text.is_empty() {
                        continue;
                    }
                    let xml_text = match parent.get(txn, parent.len(txn).saturating_sub(1)) {
                        Some(XmlOut::Text(t)) => t,
                        _ => parent.push_back(txn, XmlTextPrelim::new("")),
                    };
                    let at = xml_text.len(txn);
                    // Always explicit: a plain insert would inherit the marks of the text
                    // before it.
                    let attrs: Attrs = self.marks.iter().cloned().collect();
                    xml_text.insert_with_attributes(txn, at, &text, attrs);
                }
                html::Node::Element { tag, attrs, children } => {
                    let mark: Option<(&'static str, Any)> = match tag.as_str() {
                        "strong" | "b" => Some((self.schema.mark("strong"), Any::Map(Default::default()))),
                        "em" | "i" => Some((self.schema.mark("em"), Any::Map(Default::default()))),
                        "u" => Some(("underline", Any::Map(Default::default()))),
                        "s" | "del" | "strike" => Some((self.schema.mark("s"), Any::Map(Default::default()))),
                        "code" => Some(("code", Any::Map(Default::default()))),
                        "a" => {
                            let href = attrs.get("href").cloned().unwrap_or_default();
                            let map: HashMap<String, Any> = HashMap::from([("href".to_string(), Any::from(href))]);
                            Some(("link", Any::Map(Arc::new(map))))
                        }
                        "br" => {
                            parent.push_back(txn, XmlElementPrelim::empty(self.schema.node("hard_break")));
                            continue;
                        }
                        "img" => {
                            let img: XmlElementRef = parent.push_back(txn, XmlElementPrelim::empty("image"));
                            for a in ["src", "alt", "title"] {
                                if let Some(v) = attrs.get(a) {
                                    img.insert_attribute(txn, a, Any::from(v.as_str()));
                                }
                            }
                            continue;
                        }
                        _ => None,
                    };
                    if let Some((name, value)) = mark {
                        self.marks.push((Arc::from(name), value));
                        self.inline(txn, parent, children);
                        self.marks.pop();
                    } else {
                        self.inline(txn, parent, children);
                    }
                }
            }
        }
    }
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    if space {
        out.push(' ');
    }
    out
}

/// A small, forgiving HTML reader: enough for editor exports (no scripts, no CSS).
mod html {
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    pub enum Node {
        Text(String),
        Element { tag: String, attrs: HashMap<String, String>, children: Vec<Node> },
    }

    const VOID: &[&str] = &["br", "hr", "img", "meta", "link", "input", "col", "wbr", "source"];
    const BLOCKS: &[&str] = &[
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "blockquote",
        "pre",
        "hr",
        "div",
        "section",
        "article",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "td",
        "th",
        "body",
        "html",
        "main",
        "header",
        "footer",
    ];

    impl Node {
        pub fn tag(&self) -> Option<&str> {
            match self {
                Node::Element { tag, .. } => Some(tag),
                Node::Text(_) => None,
            }
        }

        pub fn block_tag(&self) -> Option<&str> {
            self.tag().filter(|t| BLOCKS.contains(t))
        }

        pub fn children(&self) -> &[Node] {
            match self {
                Node::Element { children, .. } => children,
                Node::Text(_) => &[],
            }
        }

        pub fn is_blank_text(&self) -> bool {
            matches!(self, Node::Text(t) if t.trim().is_empty())
        }

        pub fn text_content(&self) -> String {
            match self {
                Node::Text(t) => t.clone(),
                Node::Element { tag, children, .. } if tag == "br" => {
                    let _ = children;
                    "\n".into()
                }
                Node::Element { children, .. } => children.iter().map(Node::text_content).collect(),
            }
        }
    }

    fn decode_entities(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            rest = &rest[amp..];
            let Some(semi) = rest[..rest.len().min(12)].find(';') else {
                out.push('&');
                rest = &rest[1..];
                continue;
            };
            let entity = &rest[1..semi];
            let decoded = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                e if e.starts_with("#x") || e.starts_with("#X") => {
                    u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
                }
                e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            match decoded {
                Some(c) => {
                    out.push(c);
                    rest = &rest[semi + 1..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn parse_attrs(s: &str) -> HashMap<String, String> {
        let mut attrs = HashMap::new();
        let mut chars = s.trim().trim_end_matches('/').chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let name: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != '=')).collect();
            if name.is_empty() {
                break;
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut value = String::new();
            if chars.next_if_eq(&'=').is_some() {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                match chars.peek().copied() {
                    Some(q @ ('"' | '\'')) => {
                        chars.next();
                        value = std::iter::from_fn(|| chars.next_if(|c| *c != q)).collect();
                        chars.next();
                    }
                    _ => value = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect(),
                }
            }
            attrs.insert(name.to_ascii_lowercase(), decode_entities(&value));
        }
        attrs
    }

    /// Parses into a forest; unclosed elements are closed at the end, stray closing tags ignored.
    pub fn parse(input: &str) -> Result<Vec<Node>, String> {
        // (tag, attrs, children) of each open element; the bottom one is the root.
        let mut stack: Vec<(String, HashMap<String, String>, Vec<Node>)> =
            vec![(String::new(), HashMap::new(), Vec::new())];
        let mut rest = input;
        while !rest.is_empty() {
            let Some(lt) = rest.find('<') else {
                push_text(&mut stack, rest);
                break;
            };
            push_text(&mut stack, &rest[..lt]);
            rest = &rest[lt..];
            if let Some(body) = rest.strip_prefix("<!--") {
                rest = body.find("-->").map_or("", |end| &body[end + 3..]);
                continue;
            }
            let Some(gt) = rest.find('>') else {
                push_text(&mut stack, rest);
                break;
            };
            let inner = &rest[1..gt];
            rest = &rest[gt + 1..];
            if inner.starts_with('!') || inner.starts_with('?') {
                continue;
            }
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim().to_ascii_lowercase();
                if let Some(pos) = stack.iter().rposition(|(t, _, _)| *t == name).filter(|&p| p > 0) {
                    while stack.len() > pos {
                        close(&mut stack);
                    }
                }
                continue;
            }
            let name_end = inner.find(|c: char| c.is_whitespace() || c == '/').unwrap_or(inner.len());
            let name = inner[..name_end].to_ascii_lowercase();
            if name.is_empty() {
                push_text(&mut stack, "<");
                continue;
            }
            let attrs = parse_attrs(&inner[name_end..]);
            if name == "script" || name == "style" {
                let end = format!("</{name}");
                rest = rest.to_ascii_lowercase().find(&end).map_or("", |i| {
                    let after = &rest[i..];
                    after.find('>').map_or("", |g| &after[g + 1..])
                });
                continue;
            }
            if VOID.contains(&name.as_str()) || inner.ends_with('/') {
                if let Some(top) = stack.last_mut() {
                    top.2.push(Node::Element { tag: name, attrs, children: Vec::new() });
                }
            } else {
                stack.push((name, attrs, Vec::new()));
            }
            if stack.len() > 512 {
                return Err("nesting deeper than 512 elements".into());
            }
        }
        while stack.len() > 1 {
            close(&mut stack);
        }
        Ok(stack.pop().map(|(_, _, children)| children).unwrap_or_default())
    }

    fn push_text(stack: &mut [(String, HashMap<String, String>, Vec<Node>)], text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(top) = stack.last_mut() {
            top.2.push(Node::Text(decode_entities(text)));
        }
    }

    fn close(stack: &mut Vec<(String, HashMap<String, String>, Vec<Node>)>) {
        if let Some((tag, attrs, children)) = stack.pop()
            && let Some(parent) = stack.last_mut()
        {
            parent.2.push(Node::Element { tag, attrs, children });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Doc {
        let doc = Doc::new();
        {
            let mut txn = doc.transact_mut();
            let f = txn.get_or_insert_xml_fragment(PROSEMIRROR);
            let h: XmlElementRef = f.push_back(&mut txn, XmlElementPrelim::empty("heading"));
            h.insert_attribute(&mut txn, "level", Any::from(2.0));
            h.push_back(&mut txn, XmlTextPrelim::new("Title <1>"));
            let p: XmlElementRef = f.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            let t: XmlTextRef = p.push_back(&mut txn, XmlTextPrelim::new("Hello "));
            let bold: Attrs = HashMap::from([(Arc::from("bold"), Any::Map(Default::default()))]);
            t.insert_with_attributes(&mut txn, 6, "world", bold);
            let title = txn.get_or_insert_text("title");
            title.insert(&mut txn, 0, "A note");
            let meta = txn.get_or_insert_map("meta");
            meta.insert(&mut txn, "pinned", true);
        }
        doc
    }

    /// Reads a document the way a peer does: through an update, so roots have no declared type.
    fn through_update(doc: &Doc) -> Doc {
        doc_from_state(&state_of(doc)).unwrap()
    }

    #[test]
    fn classifies_undeclared_roots() {
        let doc = through_update(&sample());
        let txn = doc.transact();
        let kinds: Vec<(String, RootKind)> = roots(&txn).into_iter().map(|(n, k, _)| (n, k)).collect();
        assert_eq!(
            kinds,
            vec![
                ("meta".into(), RootKind::Map),
                ("prosemirror".into(), RootKind::XmlFragment),
                ("title".into(), RootKind::Text),
            ]
        );
    }

    #[test]
    fn text_and_html() {
        let doc = through_update(&sample());
        assert_eq!(to_text(&doc), "Title <1>\nHello world\n");
        assert_eq!(to_html(&doc), "<h2>Title &lt;1&gt;</h2><p>Hello <strong>world</strong></p>");
    }

    #[test]
    fn json_roundtrip() {
        let doc = through_update(&sample());
        let json = to_json(&doc);
        let again = from_json(&json).unwrap();
        assert_eq!(to_json(&through_update(&again)), json);
        assert_eq!(json["title"]["delta"][0]["insert"], "A note");
        assert_eq!(json["meta"]["value"]["pinned"], true);
    }

    #[test]
    fn html_roundtrip_keeps_structure_and_marks() {
        let html = "<h2>Title &lt;1&gt;</h2><p>Hello <strong>world</strong> and <a href=\"https://x.y/?a=1&amp;b=2\">a link</a></p>\
                    <ul><li><p>one</p></li><li>two</li></ul><pre><code>let x = 1;\nx</code></pre><hr><p>a<br>b</p>";
        let doc = from_html(html, Schema::Basic).unwrap();
        let out = to_html(&through_update(&doc));
        assert_eq!(
            out,
            "<h2>Title &lt;1&gt;</h2><p>Hello <strong>world</strong> and <a href=\"https://x.y/?a=1&amp;b=2\">a link</a></p>\
             <ul><li><p>one</p></li><li><p>two</p></li></ul><pre><code>let x = 1;\nx</code></pre><hr><p>a<br>b</p>"
        );
        let tiptap = to_json(&from_html("<ul><li>x</li></ul><p><b>y</b></p>", Schema::Tiptap).unwrap());
        assert_eq!(tiptap["prosemirror"]["children"][0]["tag"], "bulletList");
        assert!(tiptap["prosemirror"]["children"][1]["children"][0]["text"][0]["attributes"]["bold"].is_object());
    }

    #[test]
    fn html_reader_survives_garbage() {
        for input in
            ["<", "<<>>", "</p></p>", "<p <b>x", "&&&;", "<!-- x", "<script>alert(1)</script>ok", "<p>\u{0}</p>"]
        {
            let doc = from_html(input, Schema::Basic).unwrap();
            let _ = to_html(&doc);
        }
        assert_eq!(to_text(&from_html("<script>alert(1)</script><p>ok</p>", Schema::Basic).unwrap()), "ok\n");
    }

    #[test]
    fn plain_text_import() {
        let doc = from_text("one\n\ntwo\n", Schema::Basic);
        assert_eq!(to_text(&through_update(&doc)), "one\n\ntwo\n");
    }

    #[test]
    fn replace_content_converges_without_duplicates() {
        // Two peers share a document, then one replaces its content with another version.
        let a = Doc::with_client_id(1);
        {
            let mut txn = a.transact_mut();
            let f = txn.get_or_insert_xml_fragment(PROSEMIRROR);
            let p: XmlElementRef = f.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            p.push_back(&mut txn, XmlTextPrelim::new("version one"));
        }
        let v1 = state_of(&a);
        {
            let mut txn = a.transact_mut();
            let f = txn.get_or_insert_xml_fragment(PROSEMIRROR);
            let p: XmlElementRef = f.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            p.push_back(&mut txn, XmlTextPrelim::new("later edit"));
            txn.get_or_insert_text("title").insert(&mut txn, 0, "t");
        }
        let b = doc_from_state(&state_of(&a)).unwrap();
        let server = doc_from_state(&state_of(&a)).unwrap();
        let update = {
            let target = doc_from_state(&v1).unwrap();
            let mut txn = server.transact_mut();
            replace_content(&mut txn, &target).unwrap();
            txn.encode_update_v1()
        };
        assert_eq!(to_text(&server), "version one\n");
        b.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
        assert_eq!(to_text(&b), "version one\n");
        assert!(roots(&b.transact()).iter().all(|(n, _, _)| n != "title"), "roots absent from the version are emptied");
        // Edits after the restore still converge.
        {
            let mut txn = b.transact_mut();
            let f = txn.get_or_insert_xml_fragment(PROSEMIRROR);
            let p: XmlElementRef = f.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
            p.push_back(&mut txn, XmlTextPrelim::new("after"));
        }
        let missing = b.transact().encode_state_as_update_v1(&server.transact().state_vector());
        server.transact_mut().apply_update(Update::decode_v1(&missing).unwrap()).unwrap();
        assert_eq!(to_text(&server), "version one\nafter\n");
    }
}
