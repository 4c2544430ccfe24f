//! The streaming HTML scanner that finds where the prebind snippet goes.
//!
//! Sans-IO: [`HtmlScanner::feed`] takes the page chunk by chunk and says which
//! bytes can go out at once and, when it finds it, where the insertion point
//! is. It never buffers the page: the only bytes it holds back are those of a
//! tag that might be the insertion point but is split across chunks (at most
//! the marker's length plus a few bytes).
//!
//! The insertion point is the first, in document order, of: the marker
//! comment (`<!--xmpp-prebind-->` by default), the `</head` end tag, the
//! `<body` start tag; else the end of the page. With `marker_only`, only the
//! marker counts. Markup inside comments, `<script>`, `<style>`, `<title>`,
//! `<textarea>` (and the other raw-text elements of the HTML tokenizer, HTML
//! §13.2.5) and inside quoted attribute values is not mistaken for a tag; tag
//! names are compared ASCII case-insensitively.
//!
//! A marker after `</head>` is only honoured with `marker_only`: honouring it
//! otherwise would mean holding the whole body back until the marker shows up.

use bytes::Bytes;
use memchr::memchr;

/// The longest marker comment accepted (keeps held bytes small).
pub const MAX_MARKER_LEN: usize = 64;
/// Raw-text and RCDATA elements (HTML §13.2.5): their content is not markup.
const RAW_TEXT: &[&[u8]] = &[
    b"script",
    b"style",
    b"title",
    b"textarea",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
    b"noscript",
    b"plaintext",
];
/// Longest tag name worth reading to tell raw-text elements apart.
const MAX_NAME: usize = 9;
/// Bytes held while classifying a `<`: marker or `</head` / `<body` / a name.
const HOLD: usize = MAX_MARKER_LEN + 2;

/// What [`HtmlScanner::feed`] found in a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// No insertion point yet: the emitted bytes went to `out`.
    Continue,
    /// The insertion point: what went to `out` comes before the snippet;
    /// `after` (held bytes, then the rest of the chunk) comes after it.
    Found {
        /// Bytes held from earlier chunks that belong after the snippet.
        held: Bytes,
        /// The rest of this chunk.
        rest: Bytes,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Text between tags.
    Data,
    /// Right after a `<` in text: the bytes since it are in `candidate`.
    Open,
    /// Inside a tag, after its name: looking for the closing `>`.
    /// `raw` is the index in `RAW_TEXT` of the element whose content follows.
    Tag {
        raw: Option<usize>,
        after_equals: bool,
        quote: Option<u8>,
    },
    /// Inside `<!-- … -->`; counts the `-` just seen.
    Comment { dashes: u8 },
    /// Inside `<!…>` or `<?…>`.
    Bogus,
    /// Inside a raw-text element; `matched` bytes of `</name` seen.
    RawText { element: usize, matched: usize },
    /// Found or finished: nothing more to scan.
    Done,
}

/// The streaming scanner. See the module docs.
#[derive(Debug, Clone)]
pub struct HtmlScanner {
    state: State,
    marker: Box<[u8]>,
    marker_only: bool,
    /// Bytes since the `<` being classified (held back from output).
    candidate: Vec<u8>,
}

/// What a `<` turned out to start.
enum Opened {
    /// Need more bytes.
    Undecided,
    /// The insertion point.
    InsertionPoint,
    /// Not markup (`<` followed by something else): stay in text; the
    /// candidate bytes are text.
    Text,
    /// Enter `state` after `consumed` bytes of the candidate.
    Enter(State),
}

impl HtmlScanner {
    /// A scanner for `marker` (a whole comment, `<!--…-->`, at most
    /// [`MAX_MARKER_LEN`] bytes).
    ///
    /// # Panics
    ///
    /// When `marker` does not start with `<!--` or is longer than
    /// [`MAX_MARKER_LEN`].
    pub fn new(marker: &[u8], marker_only: bool) -> Self {
        assert!(
            marker.starts_with(b"<!--") && marker.len() <= MAX_MARKER_LEN,
            "the marker must be a comment of at most {MAX_MARKER_LEN} bytes"
        );
        HtmlScanner {
            state: State::Data,
            marker: marker.into(),
            marker_only,
            candidate: Vec::with_capacity(HOLD),
        }
    }

    /// True once the insertion point was found (or `finish` was called).
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `chunk`; pushes what may be sent now to `out`.
    ///
    /// Everything in `chunk` goes out except a candidate tag still open at
    /// its end, which is held until the next chunk decides it.
    pub fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Scan {
        if self.state == State::Done {
            out.push(chunk);
            return Scan::Continue;
        }
        let bytes = &chunk[..];
        // Where in this chunk the open candidate's `<` is; `None` while the
        // candidate began in an earlier chunk (its first bytes are held).
        let mut open_at: Option<usize> = None;
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Data => match memchr(b'<', &bytes[i..]) {
                    Some(offset) => {
                        let at = i + offset;
                        // Fast path: a tag whose name ends in this chunk is
                        // classified once, from the chunk, without copying.
                        if let Some(end) = name_end(bytes, at) {
                            match self.classify_bytes(&bytes[at..=end]) {
                                Opened::Undecided => {}
                                Opened::InsertionPoint => {
                                    self.state = State::Done;
                                    push(out, &chunk, 0, at);
                                    return Scan::Found {
                                        held: Bytes::new(),
                                        rest: chunk.slice(at..),
                                    };
                                }
                                Opened::Text => {
                                    i = at + 1;
                                    continue;
                                }
                                Opened::Enter(State::Tag {
                                    raw,
                                    after_equals,
                                    quote,
                                }) => {
                                    // Straight on to the tag's `>`.
                                    let (next, state) =
                                        skip_tag(bytes, end + 1, raw, after_equals, quote);
                                    i = next;
                                    self.state = state;
                                    continue;
                                }
                                Opened::Enter(state) => {
                                    self.state = state;
                                    i = end + 1;
                                    continue;
                                }
                            }
                        }
                        self.state = State::Open;
                        self.candidate.clear();
                        self.candidate.push(b'<');
                        open_at = Some(at);
                        i = at + 1;
                    }
                    None => i = bytes.len(),
                },
                State::Open => {
                    self.candidate.push(bytes[i]);
                    i += 1;
                    let opened = self.classify();
                    if matches!(opened, Opened::Undecided) {
                        continue;
                    }
                    // Bytes of the candidate that came from earlier chunks.
                    let held_len = match open_at {
                        Some(_) => 0,
                        None => self.candidate.len() - i,
                    };
                    if matches!(opened, Opened::InsertionPoint) {
                        self.state = State::Done;
                        return match open_at {
                            Some(at) => {
                                push(out, &chunk, 0, at);
                                Scan::Found {
                                    held: Bytes::new(),
                                    rest: chunk.slice(at..),
                                }
                            }
                            None => Scan::Found {
                                held: Bytes::copy_from_slice(&self.candidate[..held_len]),
                                rest: chunk,
                            },
                        };
                    }
                    if held_len > 0 {
                        // Not the insertion point: release what was held;
                        // this chunk's bytes follow from its start.
                        out.push(Bytes::copy_from_slice(&self.candidate[..held_len]));
                    }
                    open_at = None;
                    self.state = match opened {
                        Opened::Enter(state) => state,
                        _ => {
                            // `<` then something that starts no markup: the
                            // byte after `<` is text again and may itself be `<`.
                            i -= 1;
                            State::Data
                        }
                    };
                }
                State::Tag {
                    raw,
                    after_equals,
                    quote,
                } => {
                    let (next, state) = skip_tag(bytes, i, raw, after_equals, quote);
                    i = next;
                    self.state = state;
                }
                State::Comment { dashes } => {
                    let Some(offset) = memchr(b'>', &bytes[i..]) else {
                        self.state = State::Comment {
                            dashes: trailing_dashes(&bytes[i..], dashes),
                        };
                        i = bytes.len();
                        continue;
                    };
                    let at = i + offset;
                    let dashes = trailing_dashes(&bytes[i..at], dashes);
                    i = at + 1;
                    if dashes >= 2 {
                        self.state = State::Data;
                    } else {
                        self.state = State::Comment { dashes: 0 };
                    }
                }
                State::Bogus => match memchr(b'>', &bytes[i..]) {
                    Some(offset) => {
                        i += offset + 1;
                        self.state = State::Data;
                    }
                    None => i = bytes.len(),
                },
                State::RawText { element, matched } => {
                    let name = RAW_TEXT[element];
                    if matched == 0 {
                        match memchr(b'<', &bytes[i..]) {
                            Some(offset) => {
                                i += offset + 1;
                                self.state = State::RawText {
                                    element,
                                    matched: 1,
                                };
                            }
                            None => i = bytes.len(),
                        }
                        continue;
                    }
                    let b = bytes[i];
                    // `</` + name, then a delimiter.
                    let expected = if matched == 1 {
                        Some(b'/')
                    } else {
                        name.get(matched - 2).copied()
                    };
                    match expected {
                        Some(e) if b.eq_ignore_ascii_case(&e) => {
                            i += 1;
                            self.state = State::RawText {
                                element,
                                matched: matched + 1,
                            };
                        }
                        None if is_delimiter(b) => {
                            // The end tag: skip its attributes like any tag.
                            self.state = State::Tag {
                                raw: None,
                                after_equals: false,
                                quote: None,
                            };
                        }
                        _ => {
                            // Not the end tag; re-examine this byte (it may be `<`).
                            self.state = State::RawText {
                                element,
                                matched: 0,
                            };
                        }
                    }
                }
                State::Done => unreachable!("returned above"),
            }
        }
        match open_at {
            // The open candidate's bytes are held, not sent.
            Some(at) => push(out, &chunk, 0, at),
            // The whole chunk continues a candidate from an earlier one.
            None if self.state == State::Open => {}
            None => push(out, &chunk, 0, bytes.len()),
        }
        Scan::Continue
    }

    /// The page ended: pushes any held bytes; the snippet goes after them.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.state == State::Open && !self.candidate.is_empty() {
            out.push(Bytes::copy_from_slice(&self.candidate));
        }
        self.candidate.clear();
        self.state = State::Done;
    }

    /// Classifies the bytes since `<`.
    fn classify(&self) -> Opened {
        self.classify_bytes(&self.candidate)
    }

    #[inline(always)]
    fn classify_bytes(&self, c: &[u8]) -> Opened {
        let marker = &self.marker[..];
        // Only `<` and `<!…` can begin the marker: skip the memcmp otherwise.
        if c.get(1).is_none_or(|&b| b == b'!') && marker.starts_with(c) {
            return if c.len() == marker.len() {
                Opened::InsertionPoint
            } else {
                Opened::Undecided
            };
        }
        match c.get(1) {
            Some(b'!') => {
                if b"<!--".starts_with(c) {
                    return Opened::Undecided;
                }
                if c.starts_with(b"<!--") {
                    // Comment content so far: everything after `<!--`,
                    // up to the current byte; `<!-->` closes at once.
                    let content = &c[4..];
                    return match content {
                        [b'>'] | [b'-', b'>'] => Opened::Enter(State::Data),
                        _ => Opened::Enter(State::Comment {
                            dashes: trailing_dashes(content, 0),
                        }),
                    };
                }
                return Opened::Enter(bogus_or_data(c));
            }
            Some(b'?') => return Opened::Enter(bogus_or_data(c)),
            _ => {}
        }
        let (closing, name_start) = if c.get(1) == Some(&b'/') {
            (true, 2)
        } else {
            (false, 1)
        };
        let Some(&first) = c.get(name_start) else {
            return Opened::Undecided;
        };
        if !first.is_ascii_alphabetic() {
            return if closing {
                // `</>` or `</ …`: a bogus comment (HTML §13.2.5.7).
                Opened::Enter(bogus_or_data(c))
            } else {
                Opened::Text
            };
        }
        let last = c[c.len() - 1];
        if !is_delimiter(last) {
            return if c.len() - name_start > MAX_NAME {
                Opened::Enter(tag(None, c))
            } else {
                Opened::Undecided
            };
        }
        let name = &c[name_start..c.len() - 1];
        if !self.marker_only {
            if closing && name.eq_ignore_ascii_case(b"head") {
                return Opened::InsertionPoint;
            }
            if !closing && name.eq_ignore_ascii_case(b"body") {
                return Opened::InsertionPoint;
            }
        }
        // Most tags are none of the raw-text elements: rule them out by
        // length and first letter before comparing names.
        let raw = if closing
            || name.len() < 3
            || !matches!(name[0] | 0x20, b's' | b't' | b'x' | b'i' | b'n' | b'p')
        {
            None
        } else {
            RAW_TEXT.iter().position(|r| name.eq_ignore_ascii_case(r))
        };
        Opened::Enter(tag(raw, c))
    }
}

/// The state after a tag name ended with the candidate's last byte.
fn tag(raw: Option<usize>, candidate: &[u8]) -> State {
    match candidate.last() {
        Some(b'>') => match raw {
            Some(element) => State::RawText {
                element,
                matched: 0,
            },
            None => State::Data,
        },
        _ => State::Tag {
            raw,
            after_equals: false,
            quote: None,
        },
    }
}

fn bogus_or_data(candidate: &[u8]) -> State {
    if candidate.last() == Some(&b'>') {
        State::Data
    } else {
        State::Bogus
    }
}

/// A byte that ends a tag name (HTML §13.2.5.8).
fn is_delimiter(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>')
}

fn trailing_dashes(bytes: &[u8], carried: u8) -> u8 {
    let n = bytes.iter().rev().take_while(|&&b| b == b'-').count();
    if n == bytes.len() {
        (carried as usize + n).min(2) as u8
    } else {
        n.min(2) as u8
    }
}

fn push(out: &mut Vec<Bytes>, chunk: &Bytes, from: usize, to: usize) {
    if to > from {
        out.push(chunk.slice(from..to));
    }
}

/// Where the name of the tag opened by the `<` at `at` ends (its delimiter,
/// or the byte past `MAX_NAME`), when that is in `bytes` and the name starts
/// with a letter.
#[inline(always)]
fn name_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut start = at + 1;
    if bytes.get(start) == Some(&b'/') {
        start += 1;
    }
    if !bytes.get(start)?.is_ascii_alphabetic() {
        return None;
    }
    let mut j = start + 1;
    while j < bytes.len() {
        if is_delimiter(bytes[j]) || j - start >= MAX_NAME {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// Scans a tag's attributes from `i`: the index past its `>` and the state
/// after it, or the chunk's end and the state to carry to the next chunk.
/// Loops over attribute values without going back through `feed`'s
/// state dispatch.
#[inline(always)]
fn skip_tag(
    bytes: &[u8],
    mut i: usize,
    raw: Option<usize>,
    mut after_equals: bool,
    mut quote: Option<u8>,
) -> (usize, State) {
    loop {
        if let Some(q) = quote {
            match memchr(q, &bytes[i..]) {
                Some(offset) => {
                    i += offset + 1;
                    quote = None;
                    after_equals = false;
                }
                None => {
                    return (
                        bytes.len(),
                        State::Tag {
                            raw,
                            after_equals: false,
                            quote: Some(q),
                        },
                    );
                }
            }
        }
        let Some(offset) = bytes[i..]
            .iter()
            .position(|&b| matches!(b, b'>' | b'"' | b'\''))
        else {
            let tail = &bytes[i..];
            let after_equals = match tail.iter().rposition(|b| !b.is_ascii_whitespace()) {
                Some(p) => tail[p] == b'=',
                None => after_equals,
            };
            return (
                bytes.len(),
                State::Tag {
                    raw,
                    after_equals,
                    quote: None,
                },
            );
        };
        let at = i + offset;
        let before = &bytes[i..at];
        let equals_before = match before.iter().rposition(|b| !b.is_ascii_whitespace()) {
            Some(p) => before[p] == b'=',
            None => after_equals,
        };
        i = at + 1;
        match bytes[at] {
            b'>' => {
                return (
                    i,
                    match raw {
                        Some(element) => State::RawText {
                            element,
                            matched: 0,
                        },
                        None => State::Data,
                    },
                );
            }
            q if equals_before => quote = Some(q),
            _ => after_equals = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MARKER: &[u8] = b"<!--xmpp-prebind-->";
    const SNIPPET: &[u8] = b"[SNIPPET]";

    /// Streams `chunks` through a scanner, splicing SNIPPET at the
    /// insertion point, exactly as the response body does.
    fn stream<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, marker_only: bool) -> Vec<u8> {
        let mut scanner = HtmlScanner::new(MARKER, marker_only);
        let mut out = Vec::new();
        let mut result = Vec::new();
        let mut inserted = false;
        for chunk in chunks {
            match scanner.feed(Bytes::copy_from_slice(chunk), &mut out) {
                Scan::Continue => {}
                Scan::Found { held, rest } => {
                    out.push(Bytes::from_static(SNIPPET));
                    out.push(held);
                    out.push(rest);
                    inserted = true;
                }
            }
        }
        if !inserted {
            scanner.finish(&mut out);
            out.push(Bytes::from_static(SNIPPET));
        }
        for piece in out {
            result.extend_from_slice(&piece);
        }
        result
    }

    fn whole(doc: &str) -> String {
        String::from_utf8(stream([doc.as_bytes()], false)).unwrap()
    }

    #[test]
    fn inserts_before_head_end_tag() {
        assert_eq!(
            whole("<html><head><title>x</title></head><body>hi</body></html>"),
            "<html><head><title>x</title>[SNIPPET]</head><body>hi</body></html>"
        );
    }

    #[test]
    fn marker_in_head_wins_and_is_kept() {
        assert_eq!(
            whole("<head><meta charset=utf-8><!--xmpp-prebind--><link></head>"),
            "<head><meta charset=utf-8>[SNIPPET]<!--xmpp-prebind--><link></head>"
        );
    }

    #[test]
    fn html_without_head_gets_snippet_before_body() {
        assert_eq!(
            whole("<!doctype html><BODY class=x>hi"),
            "<!doctype html>[SNIPPET]<BODY class=x>hi"
        );
    }

    #[test]
    fn html_without_head_or_body_gets_snippet_at_end() {
        assert_eq!(whole("<p>hello</p>"), "<p>hello</p>[SNIPPET]");
        assert_eq!(whole(""), "[SNIPPET]");
        assert_eq!(whole("<p>trailing <"), "<p>trailing <[SNIPPET]");
    }

    #[test]
    fn tags_are_case_insensitive_and_need_a_delimiter() {
        assert_eq!(whole("<HeAd></HEAD\n>"), "<HeAd>[SNIPPET]</HEAD\n>");
        assert_eq!(
            whole("<header></header><bodyguard></bodyguard>"),
            "<header></header><bodyguard></bodyguard>[SNIPPET]"
        );
        assert_eq!(whole("</heading><body/>"), "</heading>[SNIPPET]<body/>");
    }

    #[test]
    fn markup_in_comments_scripts_styles_titles_textareas_is_not_a_tag() {
        for (inside, rest) in [
            ("<!-- </head> <body> <!--xmpp-prebind- -->", ""),
            (
                "<script>if (a</head>b) '<body>'; '<!--xmpp-prebind-->'</script >",
                "",
            ),
            ("<style>/*</head>*/</style>", ""),
            ("<title></head></title>", ""),
            ("<TEXTAREA><body></textarea>", ""),
            ("<noscript></head></noscript>", ""),
            ("<div title=\"</head>\" data-x='<body>'>", ""),
            ("<!DOCTYPE html><?php </head> ?>", ""),
            ("<!---->", ""),
            ("<!-->", ""),
        ] {
            let doc = format!("{inside}{rest}</head>");
            assert_eq!(
                whole(&doc),
                format!("{inside}{rest}[SNIPPET]</head>"),
                "{doc}"
            );
        }
    }

    #[test]
    fn script_end_tag_needs_its_own_name() {
        assert_eq!(
            whole("<script></scriptx></head></script></head>"),
            "<script></scriptx></head></script>[SNIPPET]</head>"
        );
    }

    #[test]
    fn marker_only_mode_ignores_head_and_body() {
        let doc = "<head></head><body><!--xmpp-prebind--></body>";
        assert_eq!(
            String::from_utf8(stream([doc.as_bytes()], true)).unwrap(),
            "<head></head><body>[SNIPPET]<!--xmpp-prebind--></body>"
        );
        assert_eq!(
            String::from_utf8(stream([&b"<head></head>"[..]], true)).unwrap(),
            "<head></head>[SNIPPET]"
        );
    }

    #[test]
    fn a_tag_split_across_chunks_is_found_and_nothing_is_lost() {
        let doc = b"<html><head><title>t</title></head><body></body>";
        for split in 0..=doc.len() {
            let (a, b) = doc.split_at(split);
            assert_eq!(
                stream([a, b], false),
                stream([&doc[..]], false),
                "split at {split}"
            );
        }
        let one_byte: Vec<&[u8]> = doc.chunks(1).collect();
        assert_eq!(stream(one_byte, false), stream([&doc[..]], false));
    }

    #[test]
    fn bytes_before_the_insertion_point_go_out_at_once() {
        let mut scanner = HtmlScanner::new(MARKER, false);
        let mut out = Vec::new();
        assert_eq!(
            scanner.feed(Bytes::from_static(b"<html><head><meta x>"), &mut out),
            Scan::Continue
        );
        assert_eq!(out.concat(), b"<html><head><meta x>");
        out.clear();
        // A candidate split at the chunk end is held back, nothing else.
        assert_eq!(
            scanner.feed(Bytes::from_static(b"text</he"), &mut out),
            Scan::Continue
        );
        assert_eq!(out.concat(), b"text");
        out.clear();
        assert_eq!(
            scanner.feed(Bytes::from_static(b"ad><body>"), &mut out),
            Scan::Found {
                held: Bytes::from_static(b"</he"),
                rest: Bytes::from_static(b"ad><body>")
            }
        );
        assert!(out.is_empty());
        assert!(scanner.is_done());
    }

    /// Generates HTML-ish documents from fragments that stress the scanner.
    fn document() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            Just("<head>"),
            Just("</head>"),
            Just("</HEAD >"),
            Just("<body>"),
            Just("<Body class='a'>"),
            Just("<!--xmpp-prebind-->"),
            Just("<!-- c -->"),
            Just("<!-- </head> -->"),
            Just("<!---->"),
            Just("<script>"),
            Just("</script>"),
            Just("'</head>'"),
            Just("<style>"),
            Just("</style>"),
            Just("<title>"),
            Just("</title>"),
            Just("<textarea>"),
            Just("</textarea>"),
            Just("<p>"),
            Just("<a href=\"x>y\">"),
            Just("<a b='</head>'>"),
            Just("text"),
            Just("<"),
            Just(">"),
            Just("-->"),
            Just("<!doctype html>"),
            Just("</"),
            Just("<!"),
            Just("=\""),
            Just("\"")
        ];
        proptest::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_single_buffer_output(
            doc in document(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            marker_only in any::<bool>(),
        ) {
            let reference = stream([&doc[..]], marker_only);
            // The output is the input plus exactly one snippet.
            prop_assert_eq!(reference.len(), doc.len() + SNIPPET.len());
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(doc.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&doc[last..p]);
                last = p;
            }
            chunks.push(&doc[last..]);
            prop_assert_eq!(&stream(chunks, marker_only), &reference);
            let one_byte: Vec<&[u8]> = doc.chunks(1).collect();
            prop_assert_eq!(&stream(one_byte, marker_only), &reference);
        }
    }
}
