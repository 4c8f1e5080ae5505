//! `unlockbot dialog graph`: the flow as Graphviz DOT, so a service owner
//! can review a change to `flow.toml` at a glance. Asking steps are boxes
//! (with their notes), routes diamonds, endings ovals; edges are outcomes
//! (with the messages said on the way) and route conditions.

use std::fmt::Write;

use super::spec::{Dialog, Step};

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The flow of `dialog` as DOT.
pub fn dot(dialog: &Dialog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph unlockbot {{");
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", fontsize=10];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=9];");
    let _ = writeln!(out, "  start [shape=point];");
    let _ = writeln!(out, "  start -> {};", quote(&dialog.start));
    for (id, step) in dialog.steps() {
        match step {
            Step::Ask(ask) => {
                let mut label = format!("{id}\\ninput: {}", ask.input.as_str());
                if !ask.options.is_empty() {
                    let options: Vec<String> = ask.options.iter().map(u8::to_string).collect();
                    let _ = write!(label, " ({})", options.join(", "));
                }
                for note in &ask.notes {
                    let _ = write!(label, "\\nnote if {}: {}", note.when.as_str(), note.say);
                }
                let _ = writeln!(
                    out,
                    "  {} [shape=box, style=rounded, label=\"{}\"];",
                    quote(id),
                    label.replace('"', "'")
                );
                let mut outcomes: Vec<_> = ask.on.iter().collect();
                outcomes.sort_by_key(|(o, _)| **o);
                for (outcome, t) in outcomes {
                    let mut label = outcome.as_str().to_owned();
                    if !t.say.is_empty() {
                        let _ = write!(label, "\\nsays {}", t.say.join(", "));
                    }
                    let _ = writeln!(
                        out,
                        "  {} -> {} [label=\"{}\"];",
                        quote(id),
                        quote(&t.to),
                        label
                    );
                }
            }
            Step::Route(routes) => {
                let _ = writeln!(out, "  {} [shape=diamond, label={}];", quote(id), quote(id));
                for r in routes {
                    let when: Vec<&str> = r.when.iter().map(|f| f.as_str()).collect();
                    let label = if when.is_empty() {
                        "otherwise".to_owned()
                    } else {
                        when.join(" and ")
                    };
                    let _ = writeln!(
                        out,
                        "  {} -> {} [style=dashed, label={}];",
                        quote(id),
                        quote(&r.to),
                        quote(&label)
                    );
                }
            }
            Step::End { say } => {
                let _ = writeln!(
                    out,
                    "  {} [shape=oval, style=filled, fillcolor=\"#eeeeee\", label=\"{id}\\nends: {say}\"];",
                    quote(id)
                );
            }
        }
    }
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dialog::spec::load;

    #[test]
    fn every_step_and_outcome_is_drawn() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dialogs");
        let dialog = load(&dir, "en").unwrap();
        let dot = dot(&dialog);
        assert!(dot.starts_with("digraph unlockbot {"), "{dot}");
        for (id, _) in dialog.steps() {
            assert!(dot.contains(&format!("\"{id}\" [")), "{id}: {dot}");
        }
        assert!(
            dot.contains("\"ask_last4\" -> \"not_verified\" [label=\"failed\"]"),
            "{dot}"
        );
        assert!(dot.contains("account_locked and reset_allowed"), "{dot}");
        assert!(
            dot.contains("\"verified\" -> \"nothing_to_do\" [style=dashed, label=\"otherwise\"]"),
            "{dot}"
        );
        assert!(
            dot.contains("note if same_sign_on: same_sign_on_notice"),
            "{dot}"
        );
        assert!(dot.trim_end().ends_with('}'));
    }
}
