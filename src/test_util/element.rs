//! A small XML tree, with qualified names as written, for reading what the
//! layer sent the fake CM and what it answered.

use quick_xml::events::{BytesStart, Event};

/// One XML element: its qualified name as written (`stream:features`), its
/// attributes in document order (namespace declarations included), its text
/// (entities resolved) and its child elements.
///
/// ```
/// use bosh_prebind::test_util::Element;
///
/// let body = Element::parse("<body rid='7' xmlns='http://jabber.org/protocol/httpbind'><iq><jid>a@b/c</jid></iq></body>");
/// assert_eq!(body.attr("rid"), Some("7"));
/// assert_eq!(body.find("jid").map(|j| j.text.as_str()), Some("a@b/c"));
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    /// The qualified name as written.
    pub name: String,
    /// `(qualified name, value)` of each attribute, in document order.
    pub attrs: Vec<(String, String)>,
    /// The element's own text, entities resolved.
    pub text: String,
    /// The child elements, in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// Parses one well-formed document.
    ///
    /// # Panics
    ///
    /// On anything else, with the document in the message; use
    /// [`Element::try_parse`] to get an error instead.
    #[track_caller]
    pub fn parse(xml: &str) -> Element {
        Element::try_parse(xml).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Parses one well-formed document, or says why it is not one.
    pub fn try_parse(xml: &str) -> Result<Element, String> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<Element> = Vec::new();
        loop {
            let event = reader
                .read_event()
                .map_err(|e| format!("malformed XML ({e}): {xml}"))?;
            let done = match event {
                Event::Start(start) => {
                    stack.push(Element::open(&start, xml)?);
                    None
                }
                Event::Empty(start) => Some(Element::open(&start, xml)?),
                Event::End(_) => stack.pop(),
                Event::Text(text) => {
                    if let Some(parent) = stack.last_mut() {
                        parent.text.push_str(&text.xml10_content());
                    }
                    None
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference
                        .resolve_char_ref()
                        .map_err(|e| format!("bad character reference ({e}): {xml}"))?
                    {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&reference)
                            .ok_or_else(|| format!("unknown entity: {xml}"))?
                            .to_owned(),
                    };
                    stack
                        .last_mut()
                        .ok_or_else(|| format!("text outside the root: {xml}"))?
                        .text
                        .push_str(&resolved);
                    None
                }
                Event::Eof => return Err(format!("truncated XML: {xml}")),
                _ => None,
            };
            if let Some(element) = done {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
        }
    }

    fn open(start: &BytesStart<'_>, xml: &str) -> Result<Element, String> {
        let mut attrs = Vec::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| format!("bad attribute ({e}): {xml}"))?;
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad attribute value ({e}): {xml}"))?;
            attrs.push((attribute.key.as_ref().to_owned(), value.into_owned()));
        }
        Ok(Element {
            name: start.name().as_ref().to_owned(),
            attrs,
            ..Element::default()
        })
    }

    /// The value of the attribute named `name` (qualified, as written).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first element named `name`, this one included, depth first.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}
