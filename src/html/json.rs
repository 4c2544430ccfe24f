//! JSON output that is safe both as an HTTP body and inside an HTML
//! `<script>` element: besides the escapes JSON requires, `<`, `>`, `&`,
//! U+2028 and U+2029 are written as `\uXXXX`, so no value can close the
//! script element, open a comment, or end a line in older JavaScript parsers.

use std::fmt::Write as _;

/// Appends `value` as a JSON string literal.
pub(crate) fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds a flat JSON object field by field.
pub(crate) struct JsonObject {
    out: String,
}

impl JsonObject {
    pub(crate) fn new() -> Self {
        JsonObject {
            out: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        push_string(&mut self.out, key);
        self.out.push(':');
    }

    pub(crate) fn string(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_string(&mut self.out, value);
        self
    }

    pub(crate) fn number(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    pub(crate) fn boolean(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_can_break_out_of_a_script_element() {
        let mut out = String::new();
        push_string(&mut out, "</script><!--\"\\\u{2028}\u{2029}&>\n\u{1}é");
        assert_eq!(
            out,
            "\"\\u003c/script\\u003e\\u003c!--\\\"\\\\\\u2028\\u2029\\u0026\\u003e\\n\\u0001é\""
        );
    }

    #[test]
    fn builds_objects() {
        let json = JsonObject::new()
            .string("jid", "a@b/c")
            .number("rid", 7)
            .finish();
        assert_eq!(json, r#"{"jid":"a@b/c","rid":7}"#);
    }
}
