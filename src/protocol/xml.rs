//! A minimal, namespace-aware element tree over quick-xml, for the small
//! documents this crate reads: a prebind request and a connection manager's
//! `<body/>` responses.
//!
//! Both are capped in size before they get here, so a tree is cheap and keeps
//! the protocol code free of event-loop plumbing. What XMPP forbids on the wire
//! is refused here (RFC 6120 §11.1: no DTD, no processing instructions), and so
//! is anything that is not exactly one well-formed root element.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

/// How deep a document may nest. XEP-0124 bodies with SASL, features or an
/// IQ inside them are at most five levels deep; the margin is generous.
const MAX_DEPTH: usize = 32;
/// How many elements one document may hold: bounds the work a hostile peer
/// can cause within the size cap.
const MAX_ELEMENTS: usize = 1024;

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// The bytes are not UTF-8 (RFC 6120 §11.6 requires UTF-8).
    #[error("not UTF-8")]
    NotUtf8,
    /// No root element at all.
    #[error("no root element")]
    Empty,
    /// The root element was not closed.
    #[error("truncated document")]
    Truncated,
    /// A DTD, processing instruction or second root element.
    #[error("forbidden XML construct: {0}")]
    Forbidden(&'static str),
    /// Nesting or element count over the limits.
    #[error("document too complex")]
    TooComplex,
    /// quick-xml's syntax, namespace or entity errors.
    #[error("malformed XML: {0}")]
    Syntax(String),
}

/// One attribute: namespace (if prefixed), local name, unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub(crate) ns: Option<Box<str>>,
    pub(crate) name: Box<str>,
    pub(crate) value: Box<str>,
}

/// One element with its resolved namespace, attributes, child elements and
/// the concatenation of its direct text content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub(crate) ns: Option<Box<str>>,
    pub(crate) name: Box<str>,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) children: Vec<Element>,
    pub(crate) text: String,
}

impl Element {
    /// True when this element is `{ns}name`.
    pub(crate) fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && &*self.name == name
    }

    /// The first child `{ns}name`.
    pub(crate) fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// The first child in namespace `ns`, whatever its name (used for
    /// condition elements, RFC 6120 §4.9.3 and §8.3.3).
    pub(crate) fn child_in(&self, ns: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns.as_deref() == Some(ns))
    }

    /// An unprefixed attribute (unprefixed attributes are in no namespace).
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.ns.is_none() && &*a.name == name)
            .map(|a| &*a.value)
    }

    /// A namespaced attribute such as `xmpp:restart`.
    #[cfg(test)]
    pub(crate) fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.ns.as_deref() == Some(ns) && &*a.name == name)
            .map(|a| &*a.value)
    }
}

/// Parses exactly one root element from `input`.
pub(crate) fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(input).map_err(|_| XmlError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        let ns = namespace(ns)?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(XmlError::Forbidden("second root element"));
                }
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooComplex);
                }
                let element = element(&reader, ns, start)?;
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    close(&mut stack, &mut root, element);
                }
            }
            Event::End(_) => {
                // check_end_names guarantees a matching start on the stack.
                let element = stack
                    .pop()
                    .ok_or(XmlError::Forbidden("unmatched end tag"))?;
                close(&mut stack, &mut root, element);
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                match stack.last_mut() {
                    Some(parent) => parent.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(XmlError::Forbidden("text outside the root element")),
                }
            }
            Event::CData(data) => match stack.last_mut() {
                Some(parent) => parent.text.push_str(&data.xml10_content()),
                None => return Err(XmlError::Forbidden("text outside the root element")),
            },
            Event::GeneralRef(reference) => {
                let resolved: Cow<'_, str> = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => Cow::Borrowed(
                        resolve_predefined_entity(&reference)
                            .ok_or(XmlError::Forbidden("undeclared entity"))?,
                    ),
                    Err(e) => return Err(XmlError::Syntax(e.to_string())),
                };
                match stack.last_mut() {
                    Some(parent) => parent.text.push_str(&resolved),
                    None => return Err(XmlError::Forbidden("text outside the root element")),
                }
            }
            Event::DocType(_) => return Err(XmlError::Forbidden("document type declaration")),
            Event::PI(_) => return Err(XmlError::Forbidden("processing instruction")),
            Event::Decl(_) | Event::Comment(_) => {}
            Event::Eof => {
                return match (root, stack.is_empty()) {
                    (Some(root), true) => Ok(root),
                    (None, true) => Err(XmlError::Empty),
                    _ => Err(XmlError::Truncated),
                };
            }
        }
    }
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn namespace(ns: ResolveResult<'_>) -> Result<Option<Box<str>>, XmlError> {
    match ns {
        ResolveResult::Bound(ns) => Ok(Some(ns.0.into())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(XmlError::Syntax(format!(
            "undeclared namespace prefix {prefix:?}"
        ))),
    }
}

fn element(
    reader: &NsReader<&[u8]>,
    ns: Option<Box<str>>,
    start: &BytesStart<'_>,
) -> Result<Element, XmlError> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| XmlError::Syntax(e.to_string()))?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let (attr_ns, local) = reader.resolver().resolve_attribute(attribute.key);
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        attributes.push(Attribute {
            ns: namespace(attr_ns)?,
            name: local.as_ref().into(),
            value: value.as_ref().into(),
        });
    }
    Ok(Element {
        ns,
        name: start.local_name().as_ref().into(),
        attributes,
        children: Vec::new(),
        text: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_default_and_prefixed_namespaces() {
        let root = parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' \
              xmpp:restart='true' sid='a&amp;b'><x xmlns='urn:x'>1&lt;2&#x41;</x></body>",
        )
        .unwrap();
        assert!(root.is("http://jabber.org/protocol/httpbind", "body"));
        assert_eq!(root.attr_ns("urn:xmpp:xbosh", "restart"), Some("true"));
        assert_eq!(root.attr("restart"), None);
        assert_eq!(root.attr("sid"), Some("a&b"));
        assert_eq!(root.child("urn:x", "x").unwrap().text, "1<2A");
    }

    #[test]
    fn refuses_what_xmpp_forbids_and_broken_documents() {
        assert_eq!(parse(b""), Err(XmlError::Empty));
        assert_eq!(parse(b"  "), Err(XmlError::Empty));
        assert_eq!(parse(b"<body><a>"), Err(XmlError::Truncated));
        assert_eq!(parse(b"\xff\xfe"), Err(XmlError::NotUtf8));
        assert!(matches!(
            parse(b"<!DOCTYPE x [<!ENTITY a 'b'>]><body/>"),
            Err(XmlError::Forbidden(_))
        ));
        assert!(matches!(parse(b"<a/><b/>"), Err(XmlError::Forbidden(_))));
        assert!(matches!(
            parse(b"<a/>trailing"),
            Err(XmlError::Forbidden(_))
        ));
        assert!(matches!(
            parse(b"<a>&custom;</a>"),
            Err(XmlError::Forbidden(_))
        ));
        assert!(matches!(parse(b"<a></b>"), Err(XmlError::Syntax(_))));
        assert!(matches!(parse(b"<p:a/>"), Err(XmlError::Syntax(_))));
        assert!(matches!(
            parse(b"<?pi x?><a/>"),
            Err(XmlError::Forbidden(_))
        ));
    }

    #[test]
    fn bounds_depth_and_element_count() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooComplex));
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        assert_eq!(parse(wide.as_bytes()), Err(XmlError::TooComplex));
    }
}
