//! Property tests ("fuzzing" within `cargo test`) of the parsers that take
//! outside input: Twilio's webhook form and its signature, Telegram
//! updates, the operators' CSV files and the dialog files. Each property is
//! run on `FUZZ_CASES` generated inputs (default 256, a few seconds in all).
//!
//! `FUZZ_SECONDS=N` runs each property for N seconds instead: batches of
//! `FUZZ_CASES` new random inputs, one after another, until the time is up
//! (the batch running then finishes). CI runs every property this way for a
//! bounded time (`.ci/run`). A longer session, on a release build:
//! `FUZZ_SECONDS=1200 cargo test --release --test fuzz -- --test-threads=1`.
//! A failure prints the smallest input proptest could shrink it to: keep it
//! as a regression case at the end of this file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;

use unlockbot::channels::sms_twilio::{self, Signed};
use unlockbot::channels::telegram;

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name} must be a whole number, not {value:?}"),
    }
}

fn config() -> Config {
    let cases = env_number("FUZZ_CASES").map_or(256, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Config {
        cases,
        // Shrinking a failure is worth some time; passing runs never use it.
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Run a property (`run` runs one batch of `config().cases` inputs, and
/// panics with the shrunk input on a failure) once, or with `FUZZ_SECONDS`
/// set, batch after batch, each with new random inputs, until that many
/// seconds have passed.
fn fuzz(run: impl Fn(Config)) {
    let budget = env_number("FUZZ_SECONDS").map(Duration::from_secs);
    let started = Instant::now();
    let mut batches = 0u64;
    loop {
        run(config());
        batches += 1;
        if budget.is_none_or(|budget| started.elapsed() >= budget) {
            break;
        }
    }
    if budget.is_some() {
        eprintln!(
            "{batches} batches of {} inputs in {:.0} s",
            config().cases,
            started.elapsed().as_secs_f64()
        );
    }
}

const TOKEN: &str = "fuzz-auth-token";
const URL: &str = "https://unlock.example.nhs.uk/sms/twilio";
const ACCOUNT: &str = "AC00000000000000000000000000000001";

/// A form as Twilio sends it: its own parameters with the given body,
/// sender and id, plus any extra parameters.
fn twilio_params(
    body: &str,
    from: &str,
    sid: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("ToCountry", "GB"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "+447400000001"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        if !params.iter().any(|(name, _)| name == k) {
            params.push((k.clone(), v.clone()));
        }
    }
    params
}

fn encode(params: &[(String, String)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

fn sid_strategy() -> impl Strategy<Value = String> {
    ("SM|MM", "[0-9a-f]{32}").prop_map(|(p, h)| format!("{p}{h}"))
}

/// UK mobile numbers that are valid (not every 07 number is).
fn from_strategy() -> impl Strategy<Value = String> {
    "\\+447[0-9]{9}".prop_filter("a valid number", |n| {
        unlockbot::domain::parse_any_e164(n).as_deref() == Some(n.as_str())
    })
}

fn extra_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[A-Za-z][A-Za-z0-9]{0,12}", any::<String>()), 0..4)
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    /// Move a byte elsewhere (carries characters across a boundary).
    Move(usize, usize),
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (
            any::<usize>(),
            prop_oneof![Just(b'='), Just(b'&'), Just(b'%'), Just(b'+'), any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Move(i, j)),
    ]
}

fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for m in mutations {
        if out.is_empty() {
            break;
        }
        let at = |i: usize, len: usize| i % len;
        match *m {
            Mutation::Flip(i, b) => {
                let i = at(i, out.len());
                out[i] = b;
            }
            Mutation::Delete(i) => {
                let i = at(i, out.len());
                out.remove(i);
            }
            Mutation::Insert(i, b) => {
                let i = at(i, out.len() + 1);
                out.insert(i, b);
            }
            Mutation::Move(i, j) => {
                let i = at(i, out.len());
                let b = out.remove(i);
                let j = at(j, out.len() + 1);
                out.insert(j, b);
            }
        }
    }
    out
}

/// Any bytes: the form parser and the whole webhook check never panic,
/// and refuse with a typed reason.
#[test]
fn twilio_any_body_is_parsed_or_refused_cleanly() {
    fuzz(|config| {
        proptest!(config, |(body in proptest::collection::vec(any::<u8>(), 0..600))| {
            let _ = sms_twilio::parse_form(&body);
            let signed = Signed { auth_token: TOKEN, url: URL.into(), signature: "AAAA" };
            let refused = sms_twilio::accept(&body, Some(&signed), Some(ACCOUNT));
            prop_assert!(refused.is_err(), "an unsigned body was accepted");
            let unsigned = sms_twilio::accept(&body, None, None);
            if let Err(why) = unsigned {
                prop_assert!(!why.message().is_empty());
            }
        })
    });
}

/// A genuine signed form is accepted, and yields what was sent.
#[test]
fn twilio_a_signed_form_round_trips() {
    fuzz(|config| {
        proptest!(config, |(
            text in any::<String>(),
            from in from_strategy(),
            sid in sid_strategy(),
            extra in extra_strategy(),
        )| {
            let params = twilio_params(&text, &from, &sid, &extra);
            let body = encode(&params);
            prop_assert_eq!(sms_twilio::parse_form(&body).unwrap(), params.clone());
            let signature = sms_twilio::signature(TOKEN, URL, &params);
            let signed = Signed { auth_token: TOKEN, url: URL.into(), signature: &signature };
            let inbound = sms_twilio::accept(&body, Some(&signed), Some(ACCOUNT)).unwrap();
            prop_assert_eq!(inbound.body, text);
            prop_assert_eq!(inbound.sender, from);
            prop_assert_eq!(inbound.message_sid, sid);
        })
    });
}

/// Any edit of a signed form's bytes (flipped, deleted, inserted or
/// moved bytes, which can carry characters across a parameter boundary
/// that the signature cannot see) is either refused or accepted as the same
/// delivery: the same id, sender and conversation, and a body that can
/// only have been cut short, or lengthened, at a parameter boundary (the
/// residue of Twilio's signature scheme; see SECURITY.md).
#[test]
fn twilio_a_mutated_signed_form_is_refused_or_the_same_message() {
    fuzz(|config| {
        proptest!(config, |(
            text in "[A-Za-z0-9 .@?]{0,40}",
            from in from_strategy(),
            sid in sid_strategy(),
            extra in extra_strategy(),
            mutations in proptest::collection::vec(mutation_strategy(), 1..4),
        )| {
            let params = twilio_params(&text, &from, &sid, &extra);
            let body = encode(&params);
            let signature = sms_twilio::signature(TOKEN, URL, &params);
            let signed = Signed { auth_token: TOKEN, url: URL.into(), signature: &signature };
            let original = sms_twilio::accept(&body, Some(&signed), Some(ACCOUNT)).unwrap();
            let mutated = mutate(&body, &mutations);
            match sms_twilio::accept(&mutated, Some(&signed), Some(ACCOUNT)) {
                Ok(inbound) => {
                    // The same delivery: its id (so it is processed at most
                    // once, whichever copy comes first), sender and
                    // conversation.
                    prop_assert_eq!(&inbound.message_sid, &original.message_sid);
                    prop_assert_eq!(&inbound.sender, &original.sender);
                    prop_assert_eq!(&inbound.key, &original.key);
                    // The signature cannot see where the body ends: with
                    // an `&` and an `=` inserted, its end can become a
                    // parameter of its own (or a following parameter part
                    // of it). Nothing else can change.
                    prop_assert!(
                        original.body.starts_with(&inbound.body)
                            || inbound.body.starts_with(&original.body),
                        "{:?} from {:?}", inbound.body, original.body
                    );
                }
                // Refused, with a typed reason (no status other than 400/403).
                Err(why) => prop_assert!(matches!(why.status().as_u16(), 400 | 403)),
            }
        })
    });
}

/// Any bytes, and any JSON, as a Telegram webhook body: parsed or
/// refused, never a panic; and a contact's number is read as E.164 or
/// refused.
#[test]
fn telegram_any_body_is_parsed_or_refused_cleanly() {
    fuzz(|config| {
        proptest!(config, |(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            number in any::<String>(),
        )| {
            let _ = telegram::parse_update(&body);
            if let Some(e164) = telegram::contact_number(&number) {
                prop_assert!(e164.starts_with('+'));
            }
        })
    });
}

/// Real updates with one value replaced by another JSON value (a
/// string for a number, a huge number, null, an object...).
#[test]
fn telegram_a_mutated_update_is_parsed_or_refused_cleanly() {
    fuzz(|config| {
        proptest!(config, |(
            which in 0usize..64,
            replacement in json_strategy(),
            chat in any::<i64>(),
            text in any::<String>(),
        )| {
            for update in sample_updates(chat, &text) {
                let mut update = update;
                replace_nth_value(&mut update, which, replacement.clone());
                let body = serde_json::to_vec(&update).unwrap();
                let _ = telegram::parse_update(&body);
            }
        })
    });
}

/// Any text as an operators' CSV file: read or refused, never a panic;
/// every row has a line number after the header's; a row that is kept
/// has as many fields as the header.
#[test]
fn csv_any_file_is_read_or_refused_cleanly() {
    fuzz(|config| {
        proptest!(config, |(body in csv_strategy())| {
            let columns = ["email", "answer1"];
            if let Ok((_, rows)) = unlockbot::accounts::read_csv(body.as_bytes(), &columns) {
                let header_fields = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(body.as_bytes())
                    .headers()
                    .map(|h| h.len())
                    .unwrap_or(0);
                for row in rows {
                    prop_assert!(row.line >= 2, "line {}", row.line);
                    if let Ok(fields) = row.fields {
                        prop_assert_eq!(fields.len(), header_fields);
                    }
                }
            }
        })
    });
}

/// Any bytes (not only text) as a CSV file.
#[test]
fn csv_any_bytes_are_read_or_refused_cleanly() {
    fuzz(|config| {
        proptest!(config, |(body in proptest::collection::vec(any::<u8>(), 0..300))| {
            let _ = unlockbot::accounts::read_csv(body.as_slice(), &["email"]);
        })
    });
}

/// A row's error never shows an answer, whatever else is wrong with it.
#[test]
fn csv_errors_never_show_an_answer() {
    fuzz(|config| {
        proptest!(config, |(
            answers in proptest::collection::vec("Zq[a-z]{10}", 3),
            junk in proptest::collection::vec(prop_oneof![Just(","), Just("\""), Just("\u{7}"), Just("\u{202e}"), Just("\r"), Just("\n"), Just("x")], 0..6),
            at in any::<usize>(),
        )| {
            let header = "email,mobile,organisation,same_sign_on,synced_at,locked,question1,answer1,question2,answer2,question3,answer3";
            let mut row = format!(
                "jane@nhs.net,07811 123456,Leeds,false,,true,Pet?,{},Town?,{},Car?,{}",
                answers[0], answers[1], answers[2]
            );
            let mut at = at % (row.len() + 1);
            while !row.is_char_boundary(at) { at -= 1; }
            row.insert_str(at, &junk.concat());
            let file = format!("{header}\n{row}\n");
            let columns: Vec<&str> = header.split(',').collect();
            if let Ok((_, rows)) = unlockbot::accounts::read_csv(file.as_bytes(), &columns) {
                for row in rows {
                    if let Err(message) = row.fields {
                        for answer in &answers {
                            prop_assert!(!message.contains(answer.as_str()), "{message}");
                        }
                    }
                }
            }
        })
    });
}

/// A dialog file with edits (bytes changed, lines dropped or doubled)
/// loads or is refused with a message naming the file: never a panic.
#[test]
fn dialog_files_with_edits_load_or_are_refused_cleanly() {
    fuzz(|config| {
        proptest!(config, |(
            file in prop_oneof![Just("flow.toml"), Just("en.toml")],
            edits in proptest::collection::vec((any::<usize>(), 0u8..3, any::<char>()), 1..6),
        )| {
            let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dialogs");
            let dir = tempfile::tempdir().unwrap();
            for name in ["flow.toml", "en.toml", "cy.toml"] {
                std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
            }
            let path = dir.path().join(file);
            let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect();
            for (at, how, c) in edits {
                if lines.is_empty() { break; }
                let i = at % lines.len();
                match how {
                    0 => { lines.remove(i); }
                    1 => { let line = lines[i].clone(); lines.insert(i, line); }
                    _ => {
                        let line = &mut lines[i];
                        let mut j = at % (line.len() + 1);
                        while !line.is_char_boundary(j) { j -= 1; }
                        line.insert(j, c);
                    }
                }
            }
            std::fs::write(&path, lines.join("\n")).unwrap();
            match unlockbot::dialog::spec::load(dir.path(), "en") {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        })
    });
}

fn csv_strategy() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        Just(String::new()),
        Just("\"".to_owned()),
        Just("\"\"".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\r".to_owned()),
        "[a-z@. ]{0,8}",
        any::<String>(),
    ];
    let row = proptest::collection::vec(cell, 0..5).prop_map(|cells| cells.join(","));
    (
        prop_oneof![
            Just("email,answer1".to_owned()),
            Just("\u{feff}email,answer1,x".to_owned()),
            any::<String>()
        ],
        proptest::collection::vec(row, 0..6),
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    )
        .prop_map(|(header, rows, eol)| {
            let mut out = header;
            for r in rows {
                out.push_str(eol);
                out.push_str(&r);
            }
            out
        })
}

fn json_strategy() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn sample_updates(chat: i64, text: &str) -> Vec<serde_json::Value> {
    use serde_json::json;
    let user = json!({"id": chat, "is_bot": false, "first_name": "Jane", "language_code": "cy"});
    let private = json!({"id": chat, "type": "private", "first_name": "Jane"});
    let message = |extra: serde_json::Value| {
        let mut m = json!({"message_id": 5, "date": 1_795_000_000, "chat": private, "from": user});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    vec![
        json!({"update_id": 1, "message": message(json!({"text": text}))}),
        json!({"update_id": 2, "message": message(json!({"contact": {"phone_number": "447400123456", "first_name": "Jane", "user_id": chat}}))}),
        json!({"update_id": 3, "edited_message": message(json!({"text": text, "edit_date": 1_795_000_100}))}),
        json!({"update_id": 4, "callback_query": {"id": "cbq", "from": user, "chat_instance": "-1", "data": "option:1",
            "message": message(json!({"text": "Reply 1 or 2"}))}}),
    ]
}

/// Replace the `n`th value (depth first, wrapping) of `value` by `with`.
fn replace_nth_value(value: &mut serde_json::Value, n: usize, with: serde_json::Value) {
    fn count(v: &serde_json::Value) -> usize {
        1 + match v {
            serde_json::Value::Array(a) => a.iter().map(count).sum(),
            serde_json::Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut serde_json::Value, n: &mut usize, with: &serde_json::Value) -> bool {
        if *n == 0 {
            *v = with.clone();
            return true;
        }
        *n -= 1;
        match v {
            serde_json::Value::Array(a) => a.iter_mut().any(|x| walk(x, n, with)),
            serde_json::Value::Object(o) => o.values_mut().any(|x| walk(x, n, with)),
            _ => false,
        }
    }
    let total = count(value);
    let mut n = n % total;
    walk(value, &mut n, &with);
}

// Regression cases: inputs a longer fuzzing session found, kept as plain
// tests (add one per finding, with the smallest input).

/// Found by a 2-minute release-build session of
/// `twilio_a_mutated_signed_form_is_refused_or_the_same_message`: one `&`
/// inserted into a signed form's `Body` cuts the body short and turns the
/// rest into a parameter of its own (a name, no value). Twilio's signature
/// joins the sorted names and values with no separator, and the new name
/// sorts right after `Body`, so the signature still holds: the form was
/// accepted as the same message id with a shorter body.
#[test]
fn regression_an_ampersand_in_a_signed_body_does_not_cut_it_short() {
    let text = "A aAaaaCAaa .aaa0A.A A0.0 0AAaa..a";
    let (from, sid) = ("+447000000000", "SM0aaaa0aa0aa0000aaa0aa00a0a0a0aa0");
    let params = twilio_params(text, from, sid, &[]);
    let body = encode(&params);
    let signature = sms_twilio::signature(TOKEN, URL, &params);
    let signed = Signed {
        auth_token: TOKEN,
        url: URL.into(),
        signature: &signature,
    };
    let original = sms_twilio::accept(&body, Some(&signed), Some(ACCOUNT)).unwrap();
    let cut = String::from_utf8(body.clone())
        .unwrap()
        .replacen("aAaaaCAaa", "aAaaa&CAaa", 1);
    assert_ne!(cut.as_bytes(), body.as_slice());
    match sms_twilio::accept(cut.as_bytes(), Some(&signed), Some(ACCOUNT)) {
        Ok(inbound) => assert_eq!(inbound, original),
        Err(why) => assert!(matches!(why.status().as_u16(), 400 | 403)),
    }
}
