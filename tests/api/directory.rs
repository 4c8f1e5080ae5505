//! The LDAP directory through the real webhook, against real servers:
//! Samba as an Active Directory domain controller and OpenLDAP with ppolicy
//! (see `directory_servers`). Each scenario runs on both flavours.

use crate::directory_servers::{
    DirectoryServer, Flavour, NewUser, PasswordPolicy, TestUser, private_slapd, samba, slapd,
};
use crate::helpers::{AccountRow, Options, TestApp, spawn_app_with, temp_password_in, twiml_text};

/// A bot pointed at `server` (or at `url`, a gate in front of it).
async fn bot_for(
    server: &DirectoryServer,
    url: Option<&str>,
    extra: &[(&'static str, &str)],
) -> TestApp {
    let mut env = match url {
        Some(url) => server.bot_env_with_url(url),
        None => server.bot_env(),
    };
    env.push(("LDAP_TIMEOUT_SECS", "2".to_owned()));
    for (k, v) in extra {
        env.push((k, (*v).to_owned()));
    }
    spawn_app_with(Options { env }).await
}

/// Enrol the usual three questions for `user` with `enrolment import`.
fn enrol(app: &TestApp, user: &TestUser) {
    let row = AccountRow::locked(&user.email, &user.mobile);
    let mut csv = String::from("email,question1,answer1,question2,answer2,question3,answer3\n");
    csv.push_str(&user.email);
    for (q, a) in &row.qa {
        csv.push_str(&format!(",\"{q}\",\"{a}\""));
    }
    csv.push('\n');
    let file = app.dir.path().join("enrolment.csv");
    std::fs::write(&file, csv).unwrap();
    let (status, stdout, stderr) = app.cli(&["enrolment", "import", file.to_str().unwrap()], None);
    assert!(status.success(), "enrolment import: {stdout}\n{stderr}");
}

fn last4(user: &TestUser) -> &str {
    &user.mobile[user.mobile.len() - 4..]
}

/// A locked account with questions, and a bot ready to talk about it.
async fn locked_user(server: &DirectoryServer) -> TestUser {
    let user = server.create_user(NewUser::default()).await;
    server.lock_by_failed_binds(&user).await;
    user
}

async fn unlocked_by_text(server: &DirectoryServer) {
    let user = locked_user(server).await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    let options = app.verify(&user.email, last4(&user)).await;
    assert!(options.contains("Reply 1"), "{options}");
    let done = app.text("1").await;
    assert!(done.contains("unlocked"), "{done}");
    // The old password binds again: the account really is unlocked.
    assert!(!server.state(&user).await.locked);
    let bind = server.bind(&user.login, &user.password).await;
    assert!(bind.signed_in(), "old password after unlock: {bind:?}");
    // The notice went to the registered mobile from the directory.
    let texts = app.sent_texts().await;
    assert!(texts.iter().all(|t| t.to == user.mobile), "{texts:?}");
    assert_eq!(texts.len(), 1, "{texts:?}");
}

#[tokio::test]
async fn ad_account_locked_by_failed_binds_is_unlocked_by_text() {
    let Some(server) = samba().await else { return };
    unlocked_by_text(server).await;
}

#[tokio::test]
async fn openldap_account_locked_by_failed_binds_is_unlocked_by_text() {
    let Some(server) = slapd().await else { return };
    unlocked_by_text(server).await;
}

async fn reset_by_text(server: &DirectoryServer, app: &mut TestApp, user: &TestUser) -> String {
    let options = app.verify(&user.email, last4(user)).await;
    assert!(
        options.contains("Reply 2") || options.contains("2"),
        "{options}"
    );
    let done = app.text("2").await;
    assert!(done.contains("temporary password"), "{done}");
    let texts = app.sent_texts().await;
    let password_text = texts
        .iter()
        .find(|t| t.body.contains("temporary password") && t.to == user.mobile)
        .unwrap_or_else(|| panic!("no password text to {}: {texts:?}", user.mobile));
    let password = temp_password_in(&password_text.body);
    let state = server.state(user).await;
    assert!(!state.locked && state.must_change, "{state:?}");
    password
}

/// The texted password is the account's password, and must be changed.
async fn assert_temporary_password(server: &DirectoryServer, user: &TestUser, password: &str) {
    let bind = server.bind(&user.login, password).await;
    match server.flavour() {
        // AD: right password, must change it (data 773).
        Flavour::ActiveDirectory => assert_eq!(bind.ad_data(), Some("773"), "{bind:?}"),
        // OpenLDAP: bound, but may do nothing but change it.
        Flavour::OpenLdap => assert!(bind.rc == 0 && bind.restricted, "{bind:?}"),
    }
    let old = server.bind(&user.login, &user.password).await;
    assert!(!old.signed_in(), "the old password still works: {old:?}");
}

async fn reset_sets_texted_password(server: &DirectoryServer) {
    let user = locked_user(server).await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    let password = reset_by_text(server, &mut app, &user).await;
    assert_temporary_password(server, &user, &password).await;
}

#[tokio::test]
async fn ad_reset_sets_the_texted_password_which_must_be_changed() {
    let Some(server) = samba().await else { return };
    reset_sets_texted_password(server).await;
}

#[tokio::test]
async fn openldap_reset_sets_the_texted_password_which_must_be_changed() {
    let Some(server) = slapd().await else { return };
    reset_sets_texted_password(server).await;
}

/// The account's policy refuses the first (12-character) password; a
/// longer one is accepted, and the text carries that one.
async fn refused_password_is_replaced(server: &DirectoryServer) {
    let user = locked_user(server).await;
    server
        .set_password_policy(
            &user,
            PasswordPolicy {
                min_length: 14,
                history: 5,
                complexity: true,
            },
        )
        .await;
    let mut app = bot_for(server, None, &[("TEMP_PASSWORD_LENGTH", "12")]).await;
    enrol(&app, &user);
    let password = reset_by_text(server, &mut app, &user).await;
    assert!(password.chars().count() >= 14, "{password}");
    assert_temporary_password(server, &user, &password).await;
    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["outcome"] == "password_refused_by_policy"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn ad_temporary_password_refused_by_policy_is_replaced() {
    let Some(server) = samba().await else { return };
    refused_password_is_replaced(server).await;
}

#[tokio::test]
async fn openldap_temporary_password_refused_by_policy_is_replaced() {
    let Some(server) = slapd().await else { return };
    refused_password_is_replaced(server).await;
}

/// The reply when the directory made no change, and the state it leaves.
async fn assert_nothing_changed(
    server: &DirectoryServer,
    app: &mut TestApp,
    user: &TestUser,
    reply: &str,
) {
    assert!(reply.contains("nothing has been changed"), "{reply}");
    assert!(
        server.state(user).await.locked,
        "the account must stay locked"
    );
    let bind = server.bind(&user.login, &user.password).await;
    assert!(!bind.signed_in(), "{bind:?}");
    assert!(app.sent_texts().await.is_empty(), "no text may be queued");
}

async fn every_password_refused(server: &DirectoryServer) {
    let user = locked_user(server).await;
    server
        .set_password_policy(&user, PasswordPolicy::refuse_all())
        .await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    app.verify(&user.email, last4(&user)).await;
    let sid = app.next_sid();
    let params = app.inbound_params(crate::helpers::USER_PHONE, "2", &sid);
    let response = app.post_signed(&params).await;
    assert_eq!(response.status(), 200, "a normal reply, not a 503");
    let reply = twiml_text(&response.text().await.unwrap());
    assert_nothing_changed(server, &mut app, &user, &reply).await;
    assert!(
        reply.contains("Reply 1"),
        "option 1 is still offered: {reply}"
    );
    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["outcome"] == "not_changed:every_password_refused"),
        "{audit:?}"
    );
    // Option 1 still works.
    let done = app.text("1").await;
    assert!(done.contains("unlocked"), "{done}");
    assert!(!server.state(&user).await.locked);
}

#[tokio::test]
async fn ad_every_password_refused_leaves_the_account_as_it_was() {
    let Some(server) = samba().await else { return };
    every_password_refused(server).await;
}

#[tokio::test]
async fn openldap_every_password_refused_leaves_the_account_as_it_was() {
    let Some(server) = slapd().await else { return };
    every_password_refused(server).await;
}

async fn directory_goes_away(server: &DirectoryServer, stall: bool) {
    let user = locked_user(server).await;
    let gate = server.gate().await;
    let mut app = bot_for(server, Some(gate.url()), &[]).await;
    enrol(&app, &user);
    app.verify(&user.email, last4(&user)).await;
    if stall {
        gate.stall();
    } else {
        gate.cut();
    }
    for option in ["1", "2"] {
        let sid = app.next_sid();
        let params = app.inbound_params(crate::helpers::USER_PHONE, option, &sid);
        let response = app.post_signed(&params).await;
        assert_eq!(response.status(), 200, "a normal reply, not a 503");
        let reply = twiml_text(&response.text().await.unwrap());
        gate.open();
        assert_nothing_changed(server, &mut app, &user, &reply).await;
        if stall {
            gate.stall();
        } else {
            gate.cut();
        }
    }
    gate.open();
    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["outcome"] == "not_changed:directory_unavailable"
                || (e["event"] == "directory" && e["outcome"] == "unavailable")),
        "{audit:?}"
    );
    // Back again: the same conversation goes on.
    let done = app.text("1").await;
    assert!(done.contains("unlocked"), "{done}");
}

// Multi-threaded: the gate (or the test) keeps running while a CLI
// process runs.
#[tokio::test(flavor = "multi_thread")]
async fn ad_directory_cut_mid_conversation_changes_nothing() {
    let Some(server) = samba().await else { return };
    directory_goes_away(server, false).await;
}

// Multi-threaded: the gate (or the test) keeps running while a CLI
// process runs.
#[tokio::test(flavor = "multi_thread")]
async fn ad_directory_timing_out_mid_conversation_changes_nothing() {
    let Some(server) = samba().await else { return };
    directory_goes_away(server, true).await;
}

// Multi-threaded: the gate (or the test) keeps running while a CLI
// process runs.
#[tokio::test(flavor = "multi_thread")]
async fn openldap_directory_cut_mid_conversation_changes_nothing() {
    let Some(server) = slapd().await else { return };
    directory_goes_away(server, false).await;
}

// Multi-threaded: the gate (or the test) keeps running while a CLI
// process runs.
#[tokio::test(flavor = "multi_thread")]
async fn openldap_directory_stopped_mid_conversation_changes_nothing() {
    let Some(server) = private_slapd().await else {
        return;
    };
    let user = locked_user(&server).await;
    let mut app = bot_for(&server, None, &[]).await;
    enrol(&app, &user);
    app.verify(&user.email, last4(&user)).await;
    server.stop().await;
    let reply = app.text("2").await;
    assert!(reply.contains("nothing has been changed"), "{reply}");
    assert!(app.sent_texts().await.is_empty());
    assert_eq!(app.get_status("/readyz").await, 503);
    server.start().await;
    assert!(server.state(&user).await.locked);
    assert_eq!(app.get_status("/readyz").await, 200);
}

async fn disabled_is_refused(server: &DirectoryServer) {
    let user = locked_user(server).await;
    server.disable(&user).await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    app.text("UNLOCK").await;
    app.text(&user.email).await;
    let reply = app.text(last4(&user)).await;
    assert!(
        reply.contains("disabled") && reply.contains("Local Administrator"),
        "{reply}"
    );
    assert!(app.sent_texts().await.is_empty());
    let shown = app.account(&user.email);
    assert_eq!(shown["disabled"], true, "{shown}");
    assert!(server.state(&user).await.disabled);
}

#[tokio::test]
async fn ad_disabled_account_is_sent_to_the_local_administrator() {
    let Some(server) = samba().await else { return };
    disabled_is_refused(server).await;
}

#[tokio::test]
async fn openldap_permanently_locked_account_is_sent_to_the_local_administrator() {
    let Some(server) = slapd().await else { return };
    disabled_is_refused(server).await;
}

/// An unknown email's look-up decodes a decoy entry (and on Active
/// Directory makes the second search a found account makes), so that it
/// costs what a found one does; the decoy is never taken for an account.
async fn unknown_email_is_refused_as_unknown(server: &DirectoryServer) {
    let user = locked_user(server).await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    let decoy = unlockbot::directory::DECOY_MOBILE;
    app.text("UNLOCK").await;
    let asked = app.text("nobody-here@nhs.test").await;
    assert!(asked.contains("last 4"), "{asked}");
    let refused = app.text(&decoy[decoy.len() - 4..]).await;
    assert!(refused.contains("could not verify"), "{refused}");
    let audit = app.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["outcome"] == "failed:unknown_account"),
        "{audit:?}"
    );
    let options = app.verify(&user.email, last4(&user)).await;
    assert!(options.contains("Reply 1"), "{options}");
}

#[tokio::test]
async fn ad_unknown_email_is_refused_as_unknown() {
    let Some(server) = samba().await else { return };
    unknown_email_is_refused_as_unknown(server).await;
}

#[tokio::test]
async fn openldap_unknown_email_is_refused_as_unknown() {
    let Some(server) = slapd().await else { return };
    unknown_email_is_refused_as_unknown(server).await;
}

async fn operator_commands(server: &DirectoryServer) {
    let user = locked_user(server).await;
    let app = bot_for(
        server,
        None,
        &[("SAME_SIGN_ON_ORGANISATIONS", "Test Trust, Other Trust")],
    )
    .await;
    enrol(&app, &user);
    let shown = app.account(&user.email);
    assert_eq!(shown["locked"], true, "{shown}");
    assert_eq!(shown["disabled"], false, "{shown}");
    assert_eq!(shown["mobile"], user.mobile.as_str(), "{shown}");
    assert_eq!(shown["same_sign_on"], true, "{shown}");
    assert_eq!(
        shown["security_questions"].as_array().unwrap().len(),
        3,
        "{shown}"
    );
    let (status, stdout, stderr) = app.cli(&["directory", "check", "--email", &user.email], None);
    assert!(
        stdout.contains(&user.dn) || stdout.to_lowercase().contains(&user.dn.to_lowercase()),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("locked: true"), "{stdout}");
    if server.flavour() == Flavour::ActiveDirectory {
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("may write lockoutTime: yes"), "{stdout}");
        assert!(stdout.contains("may write pwdLastSet: yes"), "{stdout}");
    }
    // A row whose email the directory does not know is rejected by line.
    let file = app.dir.path().join("unknown.csv");
    std::fs::write(
        &file,
        "email,question1,answer1,question2,answer2,question3,answer3\nnobody-here@nhs.test,Q1,a1,Q2,a2,Q3,a3\n",
    )
    .unwrap();
    let (status, _, stderr) = app.cli(&["enrolment", "import", file.to_str().unwrap()], None);
    assert!(!status.success());
    assert!(
        stderr.contains("line 2") && stderr.contains("not an account"),
        "{stderr}"
    );
}

#[tokio::test]
async fn ad_accounts_show_directory_check_and_enrolment_import() {
    let Some(server) = samba().await else { return };
    operator_commands(server).await;
}

#[tokio::test]
async fn openldap_accounts_show_directory_check_and_enrolment_import() {
    let Some(server) = slapd().await else { return };
    operator_commands(server).await;
}

#[tokio::test]
async fn enrolled_questions_follow_a_renamed_account() {
    let Some(server) = slapd().await else { return };
    let user = locked_user(server).await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    // The address changes in the directory; the entry (entryUUID) stays.
    let renamed = format!("renamed-{}", user.email);
    server.set_mail(&user, &renamed).await;
    let options = app.verify(&renamed, last4(&user)).await;
    assert!(options.contains("Reply 1"), "{options}");
}

/// `ldap://` always means StartTLS: against a server that cannot do it,
/// start-up stops with an error naming LDAP_URL, and the bind password
/// never crosses the wire.
#[tokio::test]
async fn a_server_without_starttls_stops_start_up_and_never_sees_the_password() {
    let Some(server) = slapd().await else { return };
    use tokio::io::AsyncReadExt;
    // A server that reads what it is sent and then hangs up, as one that
    // does not offer StartTLS would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept()).await
        {
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(500), socket.read(&mut buf))
                    .await
            {
                all.extend_from_slice(&buf[..n]);
            }
        }
        all
    });
    let mut env: std::collections::HashMap<String, String> = server
        .bot_env_with_url(&format!("ldap://127.0.0.1:{port}"))
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    env.insert(
        "DATABASE_URL".into(),
        format!("sqlite://{}", dir.path().join("bot.db").display()),
    );
    env.insert("LDAP_TIMEOUT_SECS".into(), "2".into());
    let password = env["LDAP_BIND_PASSWORD"].clone();
    let settings = unlockbot::settings::Settings::from_map(&env).unwrap();
    let error = match unlockbot::app::Application::build(settings).await {
        Ok(_) => panic!("started against a server without StartTLS"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("LDAP_URL"), "{error}");
    let bytes = received.await.unwrap();
    assert!(!bytes.is_empty(), "the bot never connected");
    assert!(
        !bytes
            .windows(password.len())
            .any(|w| w == password.as_bytes()),
        "the bind password crossed the wire in clear"
    );
}

/// The same "2" delivered several times at once (Twilio retries, a
/// replayed request) resets the directory account once: one password text,
/// and the texted password is the account's.
#[tokio::test(flavor = "multi_thread")]
async fn ad_repeated_delivery_resets_once() {
    let Some(server) = samba().await else { return };
    let user = locked_user(server).await;
    let mut app = bot_for(server, None, &[]).await;
    enrol(&app, &user);
    app.verify(&user.email, last4(&user)).await;
    let sid = app.next_sid();
    let params = app.inbound_params(crate::helpers::USER_PHONE, "2", &sid);
    let replies = futures::future::join_all((0..5).map(|_| app.post_signed(&params))).await;
    let mut bodies = Vec::new();
    for response in replies {
        assert_eq!(response.status(), 200);
        bodies.push(twiml_text(&response.text().await.unwrap()));
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let texts = app.sent_texts().await;
    let passwords: Vec<_> = texts
        .iter()
        .filter(|t| t.body.contains("temporary password") && t.to == user.mobile)
        .collect();
    assert_eq!(passwords.len(), 1, "{texts:?}");
    let password = temp_password_in(&passwords[0].body);
    assert_temporary_password(server, &user, &password).await;
    let resets = app
        .audit()
        .iter()
        .filter(|e| e["outcome"] == "temp_password_queued")
        .count();
    assert_eq!(resets, 1);
}
