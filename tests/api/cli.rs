//! The command line: `accounts import|show|lock|verify-password`, `audit`,
//! `dialog check`, and `serve`'s refusal to start half-configured.

use std::time::Duration;

use crate::helpers::*;

const EMAIL: &str = "jane.smith@nhs.net";
const MOBILE: &str = "07811 123456";

fn import_csv(app: &TestApp, csv: &str) -> (std::process::ExitStatus, String, String) {
    app.cli(&["accounts", "import", "-"], Some(csv))
}

/// The output line about CSV line `line`.
fn line_about(output: &str, line: u64) -> &str {
    let prefix = format!("line {line}:");
    output
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("nothing about line {line} in:\n{output}"))
}

#[tokio::test]
async fn import_rejects_bad_rows_with_line_and_reason_and_imports_the_rest() {
    let app = spawn_app().await;
    let rows = [
        AccountRow::locked("ok.one@nhs.net", MOBILE), // line 2
        AccountRow::locked("not-an-email", "07400 123456"), // line 3
        AccountRow::locked("bad.phone@nhs.net", "12345"), // line 4
        AccountRow::locked("landline@nhs.net", "020 7946 0000"), // line 5
        AccountRow::locked("personal@nhs.net", "070 1234 5678"), // line 6
        AccountRow::locked("ok.two@nhs.net", "07911 223456"), // line 7
    ];
    let (status, stdout, stderr) = import_csv(&app, &csv_of(&rows));
    assert!(
        !status.success(),
        "a rejected row fails the import: {stdout}\n{stderr}"
    );
    let output = format!("{stdout}\n{stderr}");

    let email = line_about(&output, 3).to_lowercase();
    assert!(
        email.contains("email") && email.contains("not-an-email"),
        "{email}"
    );
    let phone = line_about(&output, 4).to_lowercase();
    assert!(
        phone.contains("phone") && phone.contains("12345"),
        "{phone}"
    );
    let landline = line_about(&output, 5).to_lowercase();
    assert!(
        landline.contains("not a mobile") && landline.contains("landline"),
        "{landline}"
    );
    let personal = line_about(&output, 6).to_lowercase();
    assert!(
        personal.contains("not a mobile") && personal.contains("070"),
        "{personal}"
    );
    for line in [3, 4, 5, 6] {
        assert!(line_about(&output, line).contains("rejected"), "{output}");
    }
    assert!(
        !output
            .lines()
            .any(|l| l.starts_with("line 2:") || l.starts_with("line 7:")),
        "good rows are not reported as rejected: {output}"
    );

    assert_eq!(app.count("accounts").await, 2);
    assert_eq!(app.account("ok.one@nhs.net")["mobile"], "+447811123456");
    assert_eq!(app.account("ok.two@nhs.net")["mobile"], "+447911223456");
    for rejected in ["bad.phone@nhs.net", "landline@nhs.net", "personal@nhs.net"] {
        assert!(app.account_opt(rejected).is_none(), "{rejected} imported");
    }
}

#[tokio::test]
async fn import_exits_zero_when_every_row_is_imported() {
    let app = spawn_app().await;
    let mut no_mobile = AccountRow::locked("no.mobile@nhs.net", "");
    no_mobile.qa.clear();
    let (status, stdout, stderr) = import_csv(
        &app,
        &csv_of(&[AccountRow::locked(EMAIL, MOBILE), no_mobile]),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(app.count("accounts").await, 2);
    // A file with only a header imports nothing, successfully.
    let (status, _, stderr) = import_csv(&app, &format!("{CSV_HEADER}\n"));
    assert!(status.success(), "{stderr}");
    assert_eq!(app.count("accounts").await, 2);
}

#[tokio::test]
async fn import_normalises_spreadsheet_phone_numbers_and_emails() {
    let app = spawn_app().await;
    let forms = [
        "+44 (0)7811 123456",
        "0044 7811 123456",
        "447811123456",
        "7811123456",
        "07811-123-456",
        "+44 7811 123456",
        "(07811) 123456",
        " 07811 123 456 ",
    ];
    let rows: Vec<AccountRow> = forms
        .iter()
        .enumerate()
        .map(|(i, form)| AccountRow::locked(&format!("User.{i}@NHS.Net"), form))
        .collect();
    let (status, stdout, stderr) = import_csv(&app, &csv_of(&rows));
    assert!(status.success(), "{stdout}\n{stderr}");
    for (i, form) in forms.iter().enumerate() {
        let account = app.account(&format!("user.{i}@nhs.net"));
        assert_eq!(account["mobile"], "+447811123456", "{form:?}: {account}");
        assert_eq!(account["email"], format!("user.{i}@nhs.net"), "lower case");
        assert_eq!(account["disabled"], false, "{form:?}");
    }
    // Shown whichever case it is asked for in.
    assert_eq!(app.account("USER.0@nhs.NET")["email"], "user.0@nhs.net");
}

#[tokio::test]
async fn re_import_updates_by_email() {
    let app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let mut changed = AccountRow::locked("Jane.Smith@NHS.net", "07400 123456");
    changed.locked = false;
    changed.organisation = "Bradford Teaching Hospitals".into();
    changed.qa.truncate(2);
    app.import(&[changed]).await;
    assert_eq!(app.count("accounts").await, 1, "updated, not added");
    let account = app.account(EMAIL);
    assert_eq!(account["mobile"], "+447400123456", "{account}");
    assert_eq!(account["locked"], false, "{account}");
    assert_eq!(account["organisation"], "Bradford Teaching Hospitals");
    assert_eq!(app.count("enrolments").await, 2, "questions replaced");
    // And a mobile removed by a re-import is gone.
    app.import(&[AccountRow::locked(EMAIL, "")]).await;
    assert_eq!(app.account(EMAIL)["mobile"], serde_json::Value::Null);
}

#[tokio::test]
async fn numbers_outside_the_uk_are_imported_disabled() {
    let app = spawn_app().await;
    let rows = [
        AccountRow::locked("jersey@nhs.net", "07797 123456"),
        AccountRow::locked("guernsey@nhs.net", "07781 123456"),
        AccountRow::locked("isle.of.man@nhs.net", "07624 123456"),
        AccountRow::locked("france@nhs.net", "+33 6 12 34 56 78"),
        AccountRow::locked("uk@nhs.net", MOBILE),
    ];
    let (status, stdout, stderr) = import_csv(&app, &csv_of(&rows));
    assert!(
        status.success(),
        "imported, not rejected: {stdout}\n{stderr}"
    );
    for (email, e164) in [
        ("jersey@nhs.net", "+447797123456"),
        ("guernsey@nhs.net", "+447781123456"),
        ("isle.of.man@nhs.net", "+447624123456"),
        ("france@nhs.net", "+33612345678"),
    ] {
        let account = app.account(email);
        assert_eq!(account["disabled"], true, "{account}");
        assert_eq!(account["mobile"], e164, "{account}");
        assert!(
            stdout.contains(email),
            "the import reports {email}: {stdout}"
        );
    }
    assert_eq!(app.account("uk@nhs.net")["disabled"], false);
}

#[tokio::test]
async fn crown_dependency_mobiles_are_admitted_only_when_configured() {
    let mut app = spawn_app_with(Options {
        env: vec![("ALLOW_CROWN_DEPENDENCY_MOBILES", "true".into())],
    })
    .await;
    app.import(&[AccountRow::locked("jersey@nhs.net", "07797 123456")])
        .await;
    assert_eq!(app.account("jersey@nhs.net")["disabled"], false);
    let options = app.verify("jersey@nhs.net", "3456").await;
    assert!(options.contains("Reply 1"), "{options}");
}

#[tokio::test]
async fn show_json_has_the_documented_fields() {
    let app = spawn_app().await;
    let mut no_mobile = AccountRow::locked("no.mobile@nhs.net", "");
    no_mobile.locked = false;
    app.import(&[AccountRow::locked(EMAIL, MOBILE), no_mobile])
        .await;
    let account = app.account(EMAIL);
    assert_eq!(account["email"], EMAIL);
    assert_eq!(account["mobile"], "+447811123456");
    assert_eq!(account["locked"], true);
    assert_eq!(account["disabled"], false);
    assert_eq!(account["must_change_password"], false);
    let account = app.account("no.mobile@nhs.net");
    assert!(account["mobile"].is_null(), "{account}");
    assert_eq!(account["locked"], false);
    for field in ["locked", "disabled", "must_change_password"] {
        assert!(account[field].is_boolean(), "{field}: {account}");
    }
    // No secret in it.
    let text = account.to_string().to_lowercase();
    assert!(
        !text.contains("biscuit") && !text.contains("argon2"),
        "{text}"
    );
    // An unknown account: non-zero.
    let (status, _, _) = app.cli(&["accounts", "show", "nobody@nhs.net", "--json"], None);
    assert!(!status.success());
}

#[tokio::test]
async fn lock_locks_an_account() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow {
        locked: false,
        ..AccountRow::locked(EMAIL, MOBILE)
    }])
    .await;
    assert_eq!(app.account(EMAIL)["locked"], false);
    let (status, stdout, stderr) = app.cli(&["accounts", "lock", "Jane.Smith@nhs.net"], None);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(app.account(EMAIL)["locked"], true);
    // The bot now sees it locked.
    let options = app.verify(EMAIL, "3456").await;
    assert!(options.contains("Your account is locked"), "{options}");
    let (status, _, _) = app.cli(&["accounts", "lock", "nobody@nhs.net"], None);
    assert!(!status.success(), "locking an unknown account fails");
}

#[tokio::test]
async fn verify_password_exit_codes() {
    let mut app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    // No password yet: nothing matches.
    let (status, _, _) = app.cli(&["accounts", "verify-password", EMAIL], Some("anything"));
    assert_eq!(status.code(), Some(1));

    app.verify(EMAIL, "3456").await;
    app.text("2").await;
    let password = temp_password_in(&app.sent_texts().await[0].body);
    let (status, _, _) = app.cli(
        &["accounts", "verify-password", EMAIL],
        Some(&format!("{password}\n")),
    );
    assert_eq!(status.code(), Some(0), "the right password");
    let (status, _, _) = app.cli(
        &["accounts", "verify-password", EMAIL],
        Some(&password.to_lowercase()),
    );
    assert_eq!(status.code(), Some(1), "passwords are case-sensitive");
    let (status, _, _) = app.cli(&["accounts", "verify-password", EMAIL], Some(""));
    assert_eq!(status.code(), Some(1), "empty");
    let (status, _, _) = app.cli(
        &["accounts", "verify-password", "nobody@nhs.net"],
        Some(&password),
    );
    assert!(!status.success(), "unknown account");
}

#[tokio::test]
async fn audit_json_has_every_field_and_no_answer() {
    let mut app = spawn_app().await;
    let answers = ["Zebedee-Qx7", "Ravenscar-Pv3"];
    app.import(&[AccountRow {
        qa: vec![
            (
                "What was the name of your first pet?".into(),
                answers[0].into(),
            ),
            ("In which town were you born?".into(), answers[1].into()),
        ],
        ..AccountRow::locked(EMAIL, MOBILE)
    }])
    .await;
    let answer = |q: &str| {
        if q.contains("pet") {
            answers[0]
        } else {
            answers[1]
        }
    };
    // A failure with wrong answers, then a success.
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    app.text("3456").await;
    app.text("Wrong-Answer-Kz9").await;
    app.text("Another-Wrong-Mq2").await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    let q2 = app.text(answer(&q1)).await;
    app.text(answer(&q2)).await;
    app.text("1").await;

    let audit = app.audit();
    assert!(audit.len() >= 4, "{audit:?}");
    for entry in &audit {
        for field in ["at", "channel", "sender", "event", "outcome"] {
            assert!(entry[field].is_string(), "{field} in {entry}");
        }
        assert!(entry.get("account").is_some(), "account in {entry}");
        chrono::DateTime::parse_from_rfc3339(entry["at"].as_str().unwrap()).expect("RFC 3339");
        assert_eq!(entry["channel"], "sms");
        let sender = entry["sender"].as_str().unwrap();
        assert!(sender.ends_with("456") && sender.contains('*'), "{sender}");
        assert!(!sender.contains("7811123"), "masked: {sender}");
    }
    assert!(audit.iter().any(|e| e["account"] == EMAIL
        && e["event"] == "verification"
        && e["outcome"].as_str().unwrap().starts_with("failed")));
    assert!(
        audit
            .iter()
            .any(|e| e["account"] == EMAIL && e["event"] == "unlock" && e["outcome"] == "unlocked")
    );
    let text = serde_json::to_string(&audit).unwrap().to_lowercase();
    for secret in answers
        .iter()
        .chain(&["Wrong-Answer-Kz9", "Another-Wrong-Mq2"])
    {
        assert!(
            !text.contains(&secret.to_lowercase()),
            "{secret} in the audit"
        );
    }
}

/// A copy of the shipped dialogs in the app's directory, edited by `edit`.
fn broken_dialogs(app: &TestApp, file: &str, edit: impl Fn(String) -> String) -> String {
    let dir = app
        .dir
        .path()
        .join(format!("dialogs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(dialogs_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&path, edited).unwrap();
    dir.display().to_string()
}

#[tokio::test]
async fn dialog_check_accepts_the_shipped_dialogs() {
    let app = spawn_app().await;
    let (status, stdout, stderr) = app.cli(&["dialog", "check"], None);
    assert!(status.success(), "{stdout}\n{stderr}");
}

#[tokio::test]
async fn dialog_check_and_serve_refuse_a_transition_to_a_missing_step() {
    let app = spawn_app().await;
    let dir = broken_dialogs(&app, "flow.toml", |flow| {
        flow.replace(
            "on.verified = \"questions\"\n",
            "on.verified = \"ask_questions\"\n",
        )
    });
    let (status, stdout, stderr) = app.cli_with_env(
        &[("DIALOGS_DIR", &dir)],
        &[],
        &["dialog", "check"],
        Duration::from_secs(60),
    );
    let status = status.expect("dialog check finishes");
    assert!(!status.success(), "{stdout}\n{stderr}");
    let output = format!("{stdout}\n{stderr}");
    assert!(output.contains("flow.toml"), "names the file: {output}");
    assert!(output.contains("ask_last4"), "names the step: {output}");
    assert!(
        output.contains("ask_questions") && output.contains("does not exist"),
        "names the fault: {output}"
    );

    // `serve` refuses to start on it, with the same message.
    let (status, stdout, stderr) = app.cli_with_env(
        &[("DIALOGS_DIR", &dir)],
        &[],
        &["serve"],
        Duration::from_secs(30),
    );
    let status = status.expect("serve refuses to start (it was still running)");
    assert!(!status.success());
    let output = format!("{stdout}\n{stderr}");
    assert!(
        output.contains("flow.toml")
            && output.contains("ask_last4")
            && output.contains("ask_questions"),
        "{output}"
    );
}

#[tokio::test]
async fn dialog_check_refuses_an_unknown_placeholder() {
    let app = spawn_app().await;
    let dir = broken_dialogs(&app, "en.toml", |en| {
        en.replace("Please reply 1 or 2,", "Please reply 1 or 2, {nickname},")
    });
    let (status, stdout, stderr) = app.cli_with_env(
        &[("DIALOGS_DIR", &dir)],
        &[],
        &["dialog", "check"],
        Duration::from_secs(60),
    );
    assert!(!status.expect("finishes").success());
    let output = format!("{stdout}\n{stderr}");
    assert!(
        output.contains("en.toml") && output.contains("nickname"),
        "{output}"
    );
}

#[tokio::test]
async fn dialog_graph_prints_the_flow_as_dot() {
    let app = spawn_app().await;
    let (status, stdout, stderr) = app.cli(&["dialog", "graph"], None);
    assert!(status.success(), "{stderr}");
    assert!(stdout.starts_with("digraph unlockbot {"), "{stdout}");
    for step in [
        "ask_email",
        "verified",
        "offer_both",
        "done_reset",
        "not_verified",
    ] {
        assert!(
            stdout.contains(&format!("\"{step}\" [")),
            "{step}: {stdout}"
        );
    }
    assert!(stdout.contains("label=\"verified\""), "{stdout}");
}

#[tokio::test]
async fn dialog_check_measures_every_reply_against_its_sms_budget() {
    let app = spawn_app().await;
    // The shipped wording fits.
    let (status, stdout, stderr) = app.cli(&["dialog", "check", "--sizes"], None);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("within their SMS budgets"), "{stdout}");
    assert!(
        stdout.contains("GSM-7") && stdout.contains("greeting + ask_email"),
        "every reply is listed with its size: {stdout}"
    );

    // The greeting as it was (250 characters with the first question, 3
    // segments after a failed text is reported), and a curly apostrophe.
    let dir = broken_dialogs(&app, "en.toml", |en| {
        en.replace(
            "greeting = \"NHSmail account unlock. Reply EXIT to stop or ? for help at any time.\"",
            "greeting = \"NHSmail self-service unlock. You can unlock your account, or unlock it and get a temporary password by text. Reply EXIT at any time to stop, or ? for help.\"",
        )
        .replace("If this wasn't you", "If this wasn\u{2019}t you")
    });
    let (status, stdout, stderr) = app.cli_with_env(
        &[("DIALOGS_DIR", &dir)],
        &[],
        &["dialog", "check"],
        Duration::from_secs(60),
    );
    assert!(!status.expect("finishes").success());
    let output = format!("{stdout}\n{stderr}");
    assert!(
        output.contains("text_not_delivered + greeting + ask_email")
            && output.contains("3 GSM-7 segments"),
        "{output}"
    );
    assert!(
        output.contains("'sms_notice_unlocked'") && output.contains("U+2019"),
        "{output}"
    );
}

#[tokio::test]
async fn serve_refuses_to_start_on_a_half_configured_provider() {
    let app = spawn_app().await;
    for missing in [
        "TWILIO_AUTH_TOKEN",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_FROM_NUMBER",
    ] {
        let (status, stdout, stderr) =
            app.cli_with_env(&[], &[missing], &["serve"], Duration::from_secs(30));
        let status = status.unwrap_or_else(|| panic!("serve started without {missing}"));
        assert!(!status.success(), "without {missing}");
        let output = format!("{stdout}\n{stderr}");
        assert!(output.contains(missing), "names {missing}: {output}");
    }
}

// --- Issue 11, finding 8: the CLI's help, summaries and account commands.

#[tokio::test]
async fn import_help_shows_the_csv_header() {
    let app = spawn_app().await;
    let (status, stdout, stderr) = app.cli(&["accounts", "import", "--help"], None);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains(CSV_HEADER), "{stdout}");
    assert!(
        stdout.contains("<FILE>") && stdout.contains("The CSV file"),
        "{stdout}"
    );
}

#[tokio::test]
async fn show_without_json_prints_a_readable_summary() {
    let app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let (status, stdout, stderr) = app.cli(&["accounts", "show", "Jane.Smith@nhs.net"], None);
    assert!(status.success(), "{stderr}");
    assert!(!stdout.trim_start().starts_with('{'), "not JSON: {stdout}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(EMAIL), "{stdout}");
    let field = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in:\n{stdout}"))
            .trim_start()[label.len()..]
            .trim()
            .to_owned()
    };
    assert_eq!(field("mobile"), "+447811123456");
    assert_eq!(field("locked"), "yes");
    assert_eq!(field("self-service"), "allowed");
    assert_eq!(field("password"), "none set");
    assert_eq!(field("security questions"), "3 enrolled");
    assert!(
        stdout.contains("1. What was the name of your first pet?"),
        "{stdout}"
    );
    let lower = stdout.to_lowercase();
    assert!(
        !lower.contains("biscuit") && !lower.contains("argon2"),
        "{stdout}"
    );
    // --json is unchanged: one JSON object.
    let account = app.account(EMAIL);
    assert_eq!(account["locked"], true);
    assert_eq!(account["security_questions"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_unknown_account_gets_the_same_message_and_status_in_every_command() {
    let app = spawn_app().await;
    app.import(&[AccountRow::locked(EMAIL, MOBILE)]).await;
    let expected = "unlockbot: no account nobody@nhs.net in the directory\n";
    for command in [
        &["accounts", "show", "Nobody@nhs.net"][..],
        &["accounts", "show", "nobody@nhs.net", "--json"][..],
        &["accounts", "lock", "nobody@nhs.net"][..],
        &["accounts", "verify-password", "nobody@nhs.net"][..],
        &["directory", "check", "--email", "nobody@nhs.net"][..],
    ] {
        let stdin = (command[1] == "verify-password").then_some("a password\n");
        let (status, stdout, stderr) = app.cli(command, stdin);
        assert_eq!(status.code(), Some(3), "{command:?}: {stdout}\n{stderr}");
        // Only the one line (PostgreSQL may add its own log lines).
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("unlockbot:"))
            .collect();
        assert_eq!(said, [expected.trim_end()], "{command:?}: {stderr}");
        assert!(!stdout.contains('{'), "{command:?}: {stdout}");
    }
}

#[tokio::test]
async fn accounts_list_shows_every_account_of_the_directory() {
    let app = spawn_app().await;
    let mut open = AccountRow::locked("b.open@nhs.net", "07911 223456");
    open.locked = false;
    open.organisation = "Bradford Teaching Hospitals".into();
    app.import(&[
        AccountRow::locked("c.locked@nhs.net", MOBILE),
        open,
        AccountRow::locked("a.abroad@nhs.net", "+33 6 12 34 56 78"),
    ])
    .await;
    let (status, stdout, stderr) = app.cli(&["accounts", "list", "--json"], None);
    assert!(status.success(), "{stderr}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("a JSON array");
    let emails: Vec<&str> = list.iter().map(|a| a["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        ["a.abroad@nhs.net", "b.open@nhs.net", "c.locked@nhs.net"]
    );
    for account in &list {
        assert!(account["locked"].is_boolean(), "{account}");
        assert!(account["disabled"].is_boolean(), "{account}");
        assert!(account["organisation"].is_string(), "{account}");
        // Each as `accounts show --json` prints it.
        assert_eq!(
            *account,
            app.account(account["email"].as_str().unwrap()),
            "{account}"
        );
    }
    assert_eq!(list[0]["disabled"], true);
    assert_eq!(list[1]["locked"], false);
    assert_eq!(list[1]["organisation"], "Bradford Teaching Hospitals");
    assert_eq!(list[2]["locked"], true);

    let (status, stdout, stderr) = app.cli(&["accounts", "list"], None);
    assert!(status.success(), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("b.open@nhs.net"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        row.contains("Bradford Teaching Hospitals") && row.contains(" no "),
        "{row}"
    );
    assert!(stdout.contains("3 account(s)"), "{stdout}");

    // An LDAP directory is not listed by the bot, and says so.
    let ca = app.dir.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let ca = ca.display().to_string();
    let (status, stdout, stderr) = app.cli_with_env(
        &[
            ("DIRECTORY", "ldap"),
            ("LDAP_URL", "ldaps://dc.example.invalid"),
            ("LDAP_FLAVOUR", "active_directory"),
            ("LDAP_BIND_DN", "CN=unlockbot,DC=example,DC=invalid"),
            ("LDAP_BIND_PASSWORD", "a-real-looking-password-7"),
            ("LDAP_BASE_DN", "DC=example,DC=invalid"),
            ("LDAP_CA_FILE", &ca),
        ],
        &[],
        &["accounts", "list"],
        Duration::from_secs(60),
    );
    assert_eq!(
        status.expect("finishes").code(),
        Some(2),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("not supported with DIRECTORY=ldap"),
        "{stderr}"
    );
}

#[tokio::test]
async fn import_header_in_any_case_repeated_emails_and_rows_without_questions() {
    let app = spawn_app().await;
    let mut no_questions = AccountRow::locked("no.questions@nhs.net", "07911 223456");
    no_questions.qa.clear();
    let rows = [
        AccountRow::locked(EMAIL, MOBILE),                        // line 2
        AccountRow::locked("other@nhs.net", "07400 123456"),      // line 3
        AccountRow::locked("JANE.SMITH@nhs.net", "07911 999999"), // line 4
        no_questions,                                             // line 5
    ];
    let csv = csv_of(&rows).replacen(CSV_HEADER, &CSV_HEADER.to_uppercase(), 1);
    let (status, stdout, stderr) = import_csv(&app, &csv);
    let output = format!("{stdout}\n{stderr}");
    assert_eq!(status.code(), Some(1), "a rejected row: {output}");
    let repeated = line_about(&output, 4);
    assert!(
        repeated.contains("rejected") && repeated.contains(EMAIL) && repeated.contains("line 2"),
        "{repeated}"
    );
    assert_eq!(
        app.account(EMAIL)["mobile"],
        "+447811123456",
        "the first row is kept"
    );
    let warning = line_about(&output, 5);
    assert!(
        warning.contains("no.questions@nhs.net")
            && warning.contains("warning")
            && warning.contains("self-service"),
        "{warning}"
    );
    assert!(app.account_opt("no.questions@nhs.net").is_some());
    assert!(output.contains("3 imported, 1 rejected"), "{output}");
}

#[tokio::test]
async fn the_sample_accounts_csv_is_fictional_and_imports_cleanly() {
    let mut app = spawn_app().await;
    let sample = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("accounts.csv");
    let sample = sample.display().to_string();
    let (status, stdout, stderr) = app.cli(&["accounts", "import", &sample], None);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("6 imported, 0 rejected"), "{stdout}");
    assert!(
        stdout.contains("gwen.price@nhsmail.example imported WITHOUT security questions"),
        "{stdout}"
    );
    let (_, stdout, _) = app.cli(&["accounts", "list", "--json"], None);
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list.len(), 6);
    for account in &list {
        let email = account["email"].as_str().unwrap();
        let domain = email.rsplit('@').next().unwrap();
        assert!(
            domain.ends_with(".example") || domain.ends_with(".invalid"),
            "a reserved domain: {email}"
        );
        if let Some(mobile) = account["mobile"].as_str() {
            let n: u32 = mobile
                .strip_prefix("+447700")
                .unwrap_or_else(|| panic!("Ofcom's drama range: {mobile}"))
                .parse()
                .unwrap();
            assert!((900_000..=900_999).contains(&n), "{mobile}");
        }
    }
    // The README's first account unlocks with the README's answers.
    let options = app.verify("alex.morgan@nhsmail.example", "0001").await;
    assert!(options.contains("Reply 1"), "{options}");
}

/// The sealed answers as stored, in a fixed order.
async fn sealed_answers(app: &TestApp) -> Vec<Vec<u8>> {
    const SQL: &str = "SELECT answer_sealed FROM enrolments WHERE answer_sealed IS NOT NULL ORDER BY directory_id, position";
    match &app.db {
        TestDb::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
            let rows = sqlx::query_scalar(SQL).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        TestDb::Postgres { .. } => {
            let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
            let rows = sqlx::query_scalar(SQL).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

const NEW_ANSWERS_KEY: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf";

/// `enrolment rotate-key` seals every answer again under the new key, in
/// batches; a second run finds them all under the new key and changes
/// nothing; the service, given only the new key, then asks for characters
/// and unlocks.
#[tokio::test]
async fn rotate_key_reseals_every_answer_and_a_second_run_changes_nothing() {
    use crate::characters::{ANSWERS_KEY, characters_mode, reply_to, row_with_long_answers};
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[
        row_with_long_answers(EMAIL, MOBILE),
        row_with_long_answers("john.jones@nhs.net", "07811 654321"),
    ])
    .await;
    let before = sealed_answers(&app).await;
    assert_eq!(before.len(), 6);
    app.set_env("ANSWERS_KEY", NEW_ANSWERS_KEY);
    app.set_env("ANSWERS_KEY_OLD", ANSWERS_KEY);
    let (status, out, err) = app.cli(&["enrolment", "rotate-key", "--batch", "4"], None);
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(out.contains("6 answers sealed again"), "{out}");
    assert!(out.contains("ANSWERS_KEY_OLD can be destroyed"), "{out}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("...")).count(),
        2,
        "one progress line per batch of 4: {err}"
    );
    let after = sealed_answers(&app).await;
    assert_eq!(after.len(), 6);
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old, new, "every answer sealed again");
        assert_eq!(old.len(), new.len(), "same padding");
    }

    let (status, out, err) = app.cli(&["enrolment", "rotate-key"], None);
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(out.contains("0 answers sealed again"), "{out}");
    assert!(out.contains("6 already under it"), "{out}");
    assert_eq!(
        sealed_answers(&app).await,
        after,
        "a second run changes nothing"
    );

    // The service with the new key only reads them.
    app.restart().await;
    app.text("UNLOCK").await;
    app.text(EMAIL).await;
    let q1 = app.text("3456").await;
    assert!(q1.contains("Enter characters"), "{q1}");
    let q2 = app.text(&reply_to(&q1, 0)).await;
    let options = app.text(&reply_to(&q2, 1)).await;
    assert!(options.contains("Reply 1"), "verified: {options}");
    assert!(app.text("1").await.contains("Your account is unlocked"));
}

/// Without the old key, with a malformed one or with the new key twice it
/// refuses (exit 2) and changes nothing; an answer sealed under neither key
/// is left alone and listed (exit 1) while the others are sealed again.
#[tokio::test]
async fn rotate_key_refuses_bad_keys_and_lists_answers_under_neither() {
    use crate::characters::{ANSWERS_KEY, characters_mode, row_with_long_answers};
    let mut app = spawn_app_with(characters_mode()).await;
    app.import(&[row_with_long_answers(EMAIL, MOBILE)]).await;
    let before = sealed_answers(&app).await;
    app.set_env("ANSWERS_KEY", NEW_ANSWERS_KEY);
    let (status, _, err) = app.cli(&["enrolment", "rotate-key"], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("ANSWERS_KEY_OLD is not set"), "{err}");
    app.set_env("ANSWERS_KEY_OLD", "abcd");
    let (status, _, err) = app.cli(&["enrolment", "rotate-key"], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("ANSWERS_KEY_OLD must be 64 hexadecimal characters"),
        "{err}"
    );
    assert!(!err.contains("abcd"), "the key is not echoed: {err}");
    app.set_env("ANSWERS_KEY_OLD", &NEW_ANSWERS_KEY.to_uppercase());
    let (status, _, err) = app.cli(&["enrolment", "rotate-key"], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("the same key"), "{err}");
    assert_eq!(sealed_answers(&app).await, before, "nothing changed");

    // Another account's answers sealed under a third key.
    let third = "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    app.set_env("ANSWERS_KEY", third);
    app.import(&[row_with_long_answers("john.jones@nhs.net", "07811 654321")])
        .await;
    let with_third = sealed_answers(&app).await;
    app.set_env("ANSWERS_KEY", NEW_ANSWERS_KEY);
    app.set_env("ANSWERS_KEY_OLD", ANSWERS_KEY);
    let (status, out, err) = app.cli(&["enrolment", "rotate-key"], None);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(out.contains("3 answers sealed again"), "{out}");
    assert!(err.contains("3 answers open under neither"), "{err}");
    assert_eq!(err.matches(", question ").count(), 3, "{err}");
    let after = sealed_answers(&app).await;
    let untouched = with_third.iter().filter(|a| after.contains(a)).count();
    assert_eq!(untouched, 3, "the third key's answers are left alone");

    let (status, out, _) = app.cli(&["enrolment", "rotate-key", "--help"], None);
    assert!(status.success());
    assert!(
        out.contains("ANSWERS_KEY_OLD") && out.contains("--batch"),
        "{out}"
    );
}
