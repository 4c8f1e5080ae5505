//! Filling `{placeholders}` in the wording.

use std::collections::HashMap;

/// Values for placeholders, by name.
pub type Vars = HashMap<&'static str, String>;

/// Replace each `{name}` with its value. Names are checked when the dialog
/// is loaded; a value missing at run time renders as nothing (and is logged).
pub fn render(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => tracing::warn!(placeholder = name, "no value for placeholder"),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_and_drops_missing() {
        let mut vars = Vars::new();
        vars.insert("last4", "3456".into());
        assert_eq!(render("ending {last4}.", &vars), "ending 3456.");
        assert_eq!(render("a {nope} b", &vars), "a  b");
        assert_eq!(render("open { only", &vars), "open { only");
    }
}
