//! Real directory servers for the LDAP tests: OpenLDAP (`slapd` with the
//! ppolicy overlay) and Samba as an Active Directory domain controller,
//! started by `scripts/directory-servers/{slapd,samba}.sh` on loopback with a
//! test CA, and a kit that works on them with `ldap3` directly: make a user,
//! lock it by real failed binds, read its state, bind as it, disable it,
//! give it a password policy of its own, cut the network to it.
//!
//! `slapd()` and `samba()` start each server once per test binary (or reuse
//! one already running from an earlier run) and share it between tests;
//! every test makes accounts of its own (`create_user` names are unique), so
//! tests never disturb each other. Without the Debian packages (or, for
//! Samba, without root) they return `None` and the run prints one `SKIPPED`
//! line; with `UNLOCKBOT_REQUIRE_DIRECTORIES=1` (as in CI) that is a failure.
//!
//! A test that needs the directory to go away uses a [`Gate`] (a TCP relay
//! the test can cut or stall, in front of the shared server), or, on
//! OpenLDAP, a [`private_slapd`] of its own that it may really stop and
//! start. The shared servers are never stopped by a test: other tests use
//! them at the same time (Samba's ports are fixed: one DC per machine).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Mod, Scope, SearchEntry};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which kind of directory a server is (the bot's `LDAP_FLAVOUR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    ActiveDirectory,
    OpenLdap,
}

impl Flavour {
    /// The value of the bot's `LDAP_FLAVOUR` setting.
    pub fn setting(self) -> &'static str {
        match self {
            Flavour::ActiveDirectory => "active_directory",
            Flavour::OpenLdap => "openldap",
        }
    }
}

/// A running directory server and what a test needs to use it.
pub struct DirectoryServer {
    flavour: Flavour,
    /// The URL the bot is given: `ldap://127.0.0.1:PORT` (StartTLS) for
    /// slapd, `ldaps://127.0.0.1:636` for Samba.
    url: String,
    /// Samba also answers StartTLS on `ldap://127.0.0.1:389`.
    starttls_url: Option<String>,
    ca_file: PathBuf,
    base_dn: String,
    people_dn: String,
    /// The OpenLDAP default password policy entry.
    policy_dn: Option<String>,
    bind_dn: String,
    bind_password: String,
    admin_dn: String,
    admin_password: String,
    tls: Arc<rustls::ClientConfig>,
    /// Set for a private slapd: its own directory and port, so a test may
    /// stop and start it. `None` for the shared servers.
    private: Option<PrivateSlapd>,
}

/// The shared OpenLDAP server ([`DirectoryServer`] with `Flavour::OpenLdap`).
pub type Slapd = DirectoryServer;
/// The shared Samba AD DC ([`DirectoryServer`] with `Flavour::ActiveDirectory`).
pub type Samba = DirectoryServer;

struct PrivateSlapd {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateSlapd {
    /// Where `slapd.sh` keeps it: `SLAPD_DIR` and `SLAPD_PORT`.
    fn place(&self) -> (PathBuf, u16) {
        (self.dir.path().join("slapd"), self.port)
    }
}

/// The shared slapd, started (or reused) once per test binary; `None`
/// (after one `SKIPPED` line) when slapd is not installed, unless
/// `UNLOCKBOT_REQUIRE_DIRECTORIES=1`.
pub async fn slapd() -> Option<&'static Slapd> {
    static SLAPD: OnceLock<Option<Slapd>> = OnceLock::new();
    shared(&SLAPD, Flavour::OpenLdap).await
}

/// The shared Samba AD DC, started (or reused) once per test binary;
/// `None` (after one `SKIPPED` line) when Samba is not installed or the
/// tests do not run as root, unless `UNLOCKBOT_REQUIRE_DIRECTORIES=1`.
pub async fn samba() -> Option<&'static Samba> {
    static SAMBA: OnceLock<Option<Samba>> = OnceLock::new();
    shared(&SAMBA, Flavour::ActiveDirectory).await
}

/// A slapd of the test's own (own directory, own port), provisioned like the
/// shared one, that the test may [`stop`](DirectoryServer::stop) and
/// [`start`](DirectoryServer::start); deleted when dropped.
pub async fn private_slapd() -> Option<Slapd> {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        // A free port: the kernel's choice for port 0, released for slapd.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let private = PrivateSlapd { dir, port };
        let env = match run_script(Flavour::OpenLdap, "start", Some(private.place())) {
            Ok(env) => env,
            Err(Unavailable(why)) => {
                skip(&why);
                return None;
            }
        };
        let mut server = DirectoryServer::from_env(Flavour::OpenLdap, &env);
        server.private = Some(private);
        Some(server)
    })
    .await
    .expect("starting a private slapd")
}

async fn shared(
    cell: &'static OnceLock<Option<DirectoryServer>>,
    flavour: Flavour,
) -> Option<&'static DirectoryServer> {
    if let Some(server) = cell.get() {
        return server.as_ref();
    }
    // The script blocks for a while (Samba's first provision takes about
    // 10 s); OnceLock makes every other test wait for the one starting it.
    tokio::task::spawn_blocking(move || {
        cell.get_or_init(|| match run_script(flavour, "start", None) {
            Ok(env) => Some(DirectoryServer::from_env(flavour, &env)),
            Err(Unavailable(why)) => {
                skip(&why);
                None
            }
        })
        .as_ref()
    })
    .await
    .expect("starting a directory server")
}

/// The server cannot run here (packages missing, not root).
struct Unavailable(String);

fn required() -> bool {
    std::env::var("UNLOCKBOT_REQUIRE_DIRECTORIES").is_ok_and(|v| matches!(v.trim(), "1" | "true"))
}

fn skip(why: &str) {
    assert!(
        !required(),
        "UNLOCKBOT_REQUIRE_DIRECTORIES=1 but a directory server cannot run: {why}"
    );
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the directory tests against real servers ({why}); see README, \
             \"Directory tests\", to run them"
        );
    });
}

fn script(flavour: Flavour) -> PathBuf {
    let name = match flavour {
        Flavour::OpenLdap => "slapd.sh",
        Flavour::ActiveDirectory => "samba.sh",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/directory-servers")
        .join(name)
}

/// Runs `slapd.sh` / `samba.sh` with `command` and returns the KEY=VALUE
/// lines it prints. Exit status 2 means "cannot run here"; any other
/// failure is a broken set-up and panics with the script's output.
fn run_script(
    flavour: Flavour,
    command: &str,
    private: Option<(PathBuf, u16)>,
) -> Result<HashMap<String, String>, Unavailable> {
    let mut cmd = Command::new("bash");
    cmd.arg(script(flavour)).arg(command);
    if let Some((dir, port)) = private {
        cmd.env("SLAPD_DIR", dir)
            .env("SLAPD_PORT", port.to_string());
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()),
        Some(2) => Err(Unavailable(stderr.trim().to_owned())),
        _ => panic!(
            "{} {command} failed ({}):\n{stdout}\n{stderr}",
            script(flavour).display(),
            out.status
        ),
    }
}

fn tls_config(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("test CA file") {
        roots
            .add(cert.expect("test CA certificate"))
            .expect("test CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl DirectoryServer {
    fn from_env(flavour: Flavour, env: &HashMap<String, String>) -> Self {
        let prefix = match flavour {
            Flavour::OpenLdap => "SLAPD_",
            Flavour::ActiveDirectory => "SAMBA_",
        };
        let get = |key: &str| {
            env.get(&format!("{prefix}{key}"))
                .unwrap_or_else(|| panic!("the script printed no {prefix}{key}"))
                .clone()
        };
        let ca_file = PathBuf::from(get("CA_FILE"));
        let (url, starttls_url, policy_dn) = match flavour {
            Flavour::OpenLdap => (get("URL"), None, Some(get("POLICY_DN"))),
            Flavour::ActiveDirectory => (get("LDAPS_URL"), Some(get("STARTTLS_URL")), None),
        };
        DirectoryServer {
            flavour,
            url,
            starttls_url,
            tls: tls_config(&ca_file),
            ca_file,
            base_dn: get("BASE_DN"),
            people_dn: get("PEOPLE_DN"),
            policy_dn,
            bind_dn: get("BIND_DN"),
            bind_password: get("BIND_PASSWORD"),
            admin_dn: get("ADMIN_DN"),
            admin_password: get("ADMIN_PASSWORD"),
            private: None,
        }
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }
    /// `ldap://127.0.0.1:PORT` (StartTLS) for slapd, `ldaps://127.0.0.1:636`
    /// for Samba.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Samba's StartTLS URL, `ldap://127.0.0.1:389`; slapd's only URL.
    pub fn starttls_url(&self) -> &str {
        self.starttls_url.as_deref().unwrap_or(&self.url)
    }
    /// The test CA (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
    /// The whole directory (`dc=test,dc=lan` / `DC=test,DC=lan`); searches
    /// from the AD domain root also return search references.
    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }
    /// Where `create_user` puts accounts (on Samba, the OU the service
    /// account is delegated on).
    pub fn people_dn(&self) -> &str {
        &self.people_dn
    }
    /// The bot's service account: may read people, unlock them and reset
    /// their passwords, nothing else.
    pub fn bind_dn(&self) -> &str {
        &self.bind_dn
    }
    pub fn bind_password(&self) -> &str {
        &self.bind_password
    }
    /// The attribute that holds the organisation (`company` on AD; `o` on
    /// OpenLDAP, whose inetOrgPerson has no `company`).
    pub fn organisation_attribute(&self) -> &'static str {
        match self.flavour {
            Flavour::ActiveDirectory => "company",
            Flavour::OpenLdap => "o",
        }
    }
    /// When the account was created: `whenCreated` / `createTimestamp`.
    pub fn synced_at_attribute(&self) -> &'static str {
        match self.flavour {
            Flavour::ActiveDirectory => "whenCreated",
            Flavour::OpenLdap => "createTimestamp",
        }
    }

    /// The bot's settings for this server (issue 7's names): `DIRECTORY=ldap`,
    /// `LDAP_URL`, `LDAP_FLAVOUR`, bind DN and password, base DN, CA file,
    /// and the organisation and synced-at attributes where they differ from
    /// the defaults.
    pub fn bot_env(&self) -> Vec<(&'static str, String)> {
        self.bot_env_with_url(&self.url)
    }

    /// [`bot_env`](Self::bot_env) with another URL: a [`Gate`]'s, or Samba's
    /// StartTLS URL.
    pub fn bot_env_with_url(&self, url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("DIRECTORY", "ldap".to_owned()),
            ("LDAP_URL", url.to_owned()),
            ("LDAP_FLAVOUR", self.flavour.setting().to_owned()),
            ("LDAP_BIND_DN", self.bind_dn.clone()),
            ("LDAP_BIND_PASSWORD", self.bind_password.clone()),
            ("LDAP_BASE_DN", self.base_dn.clone()),
            ("LDAP_CA_FILE", self.ca_file.display().to_string()),
            (
                "LDAP_ORGANISATION_ATTRIBUTE",
                self.organisation_attribute().to_owned(),
            ),
            (
                "LDAP_SYNCED_AT_ATTRIBUTE",
                self.synced_at_attribute().to_owned(),
            ),
        ]
    }

    /// A new connection over TLS (LDAPS, or StartTLS for `ldap://`), not
    /// bound. Each call is a connection of its own, driven on the caller's
    /// runtime.
    pub async fn connect(&self) -> Ldap {
        self.connect_to(&self.url)
            .await
            .expect("connecting to the directory")
    }

    async fn connect_to(&self, url: &str) -> ldap3::result::Result<Ldap> {
        let settings = LdapConnSettings::new()
            .set_config(self.tls.clone())
            .set_starttls(url.starts_with("ldap://"))
            .set_conn_timeout(Duration::from_secs(10));
        let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// A connection bound as the directory's administrator.
    pub async fn admin(&self) -> Ldap {
        self.bound(&self.admin_dn, &self.admin_password).await
    }

    /// A connection bound as the bot's service account.
    pub async fn service(&self) -> Ldap {
        self.bound(&self.bind_dn, &self.bind_password).await
    }

    async fn bound(&self, dn: &str, password: &str) -> Ldap {
        let mut ldap = self.connect().await;
        ldap.with_timeout(Duration::from_secs(30))
            .simple_bind(dn, password)
            .await
            .and_then(LdapResult::success)
            .unwrap_or_else(|e| panic!("binding as {dn}: {e}"));
        ldap
    }

    /// Makes an account in `people_dn()` as the administrator, with a unique
    /// name and email unless given; it may sign in (its password is set and
    /// it is not locked, disabled or flagged must-change).
    pub async fn create_user(&self, new: NewUser) -> TestUser {
        let name = new.name.unwrap_or_else(unique_name);
        let email = new.email.unwrap_or_else(|| format!("{name}@nhs.test"));
        let mobile = new.mobile.unwrap_or_else(unique_mobile);
        let organisation = new.organisation.unwrap_or_else(|| "Test Trust".to_owned());
        let password = new.password.unwrap_or_else(|| "Initial-Pass-1".to_owned());
        let mut attrs: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
        let mut put = |k: &str, vs: Vec<Vec<u8>>| {
            if !vs.is_empty() && !vs[0].is_empty() {
                attrs.push((k.as_bytes().to_vec(), vs));
            }
        };
        let (dn, login) = match self.flavour {
            Flavour::ActiveDirectory => {
                let dn = format!("CN={name},{}", self.people_dn);
                let upn = format!("{name}@test.lan");
                put("objectClass", vec![b"user".to_vec()]);
                put("sAMAccountName", vec![name.clone().into_bytes()]);
                put("userPrincipalName", vec![upn.clone().into_bytes()]);
                put("unicodePwd", vec![unicode_pwd(&password)]);
                put("userAccountControl", vec![b"512".to_vec()]);
                (dn, upn)
            }
            Flavour::OpenLdap => {
                let dn = format!("uid={name},{}", self.people_dn);
                put("objectClass", vec![b"inetOrgPerson".to_vec()]);
                put("uid", vec![name.clone().into_bytes()]);
                put("cn", vec![name.clone().into_bytes()]);
                put("sn", vec![name.clone().into_bytes()]);
                put("userPassword", vec![password.clone().into_bytes()]);
                (dn.clone(), dn)
            }
        };
        put("mail", vec![email.clone().into_bytes()]);
        put("mobile", vec![mobile.clone().into_bytes()]);
        put(
            self.organisation_attribute(),
            vec![organisation.clone().into_bytes()],
        );
        let attrs = attrs
            .into_iter()
            .map(|(k, vs)| (k, vs.into_iter().collect::<HashSet<_>>()))
            .collect();
        let mut admin = self.admin().await;
        admin
            .add(&dn, attrs)
            .await
            .and_then(LdapResult::success)
            .unwrap_or_else(|e| panic!("adding {dn}: {e}"));
        let _ = admin.unbind().await;
        TestUser {
            dn,
            login,
            email,
            mobile,
            organisation,
            password,
        }
    }

    /// A bind as `login` (a user's DN, or UPN on AD) with `password`, on a
    /// connection of its own. On OpenLDAP a successful bind also tries to
    /// read the user's own entry, which ppolicy refuses (50) while the
    /// password must be changed.
    pub async fn bind(&self, login: &str, password: &str) -> BindAnswer {
        let mut ldap = self.connect().await;
        let result = ldap
            .with_timeout(Duration::from_secs(30))
            .simple_bind(login, password)
            .await
            .expect("bind round trip");
        let mut restricted = false;
        if result.rc == 0 && self.flavour == Flavour::OpenLdap {
            let search = ldap
                .with_timeout(Duration::from_secs(30))
                .search(login, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .expect("search round trip");
            restricted = search.1.rc == 50;
        }
        let _ = ldap.unbind().await;
        BindAnswer {
            rc: result.rc,
            text: result.text,
            restricted,
        }
    }

    /// Locks `user` the way a person does: wrong passwords until the
    /// directory locks it (3 on both servers), then checks it is locked.
    pub async fn lock_by_failed_binds(&self, user: &TestUser) {
        for _ in 0..3 {
            let answer = self.bind(&user.login, "Wrong-Password-0").await;
            assert_eq!(answer.rc, 49, "a wrong password: {answer:?}");
        }
        let state = self.state(user).await;
        assert!(
            state.locked,
            "3 wrong passwords did not lock {}: {state:?}",
            user.dn
        );
    }

    /// What the directory says about `user`, read as the administrator.
    pub async fn state(&self, user: &TestUser) -> AccountState {
        let attrs = match self.flavour {
            Flavour::ActiveDirectory => vec![
                "msDS-User-Account-Control-Computed",
                "userAccountControl",
                "pwdLastSet",
                "lockoutTime",
            ],
            Flavour::OpenLdap => vec!["pwdAccountLockedTime", "pwdReset", "pwdFailureTime"],
        };
        let entry = self.read(&user.dn, attrs).await;
        let first = |k: &str| entry.attrs.get(k).and_then(|v| v.first()).cloned();
        let int = |k: &str| first(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        match self.flavour {
            Flavour::ActiveDirectory => AccountState {
                locked: int("msDS-User-Account-Control-Computed") & 0x10 != 0,
                disabled: int("userAccountControl") & 0x2 != 0,
                must_change: first("pwdLastSet").as_deref() == Some("0"),
            },
            Flavour::OpenLdap => {
                let locked_time = first("pwdAccountLockedTime");
                let permanent = locked_time.as_deref() == Some(PERMANENT_LOCK);
                AccountState {
                    locked: locked_time.is_some() && !permanent,
                    disabled: permanent,
                    must_change: first("pwdReset").as_deref() == Some("TRUE"),
                }
            }
        }
    }

    /// The entry at `dn` with `attrs` (operational ones included when named),
    /// read as the administrator.
    pub async fn read(&self, dn: &str, attrs: Vec<&str>) -> SearchEntry {
        let mut admin = self.admin().await;
        let (entries, _) = admin
            .with_timeout(Duration::from_secs(30))
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .and_then(ldap3::SearchResult::success)
            .unwrap_or_else(|e| panic!("reading {dn}: {e}"));
        let _ = admin.unbind().await;
        SearchEntry::construct(entries.into_iter().next().expect("the entry"))
    }

    /// Disables `user` as an administrator would: AD `userAccountControl`
    /// bit 0x2; OpenLDAP the permanent lock `pwdAccountLockedTime:
    /// 000001010000Z`.
    /// Change the account's email address (the entry and its stable id stay).
    pub async fn set_mail(&self, user: &TestUser, email: &str) {
        let mut mods = vec![Mod::Replace(
            b"mail".to_vec(),
            HashSet::from([email.as_bytes().to_vec()]),
        )];
        if self.flavour == Flavour::ActiveDirectory {
            mods.push(Mod::Replace(
                b"userPrincipalName".to_vec(),
                HashSet::from([email.as_bytes().to_vec()]),
            ));
        }
        self.modify_as_admin(&user.dn, mods).await;
    }

    pub async fn disable(&self, user: &TestUser) {
        let mods = match self.flavour {
            Flavour::ActiveDirectory => vec![Mod::Replace(
                b"userAccountControl".to_vec(),
                HashSet::from([b"514".to_vec()]),
            )],
            Flavour::OpenLdap => vec![Mod::Replace(
                b"pwdAccountLockedTime".to_vec(),
                HashSet::from([PERMANENT_LOCK.as_bytes().to_vec()]),
            )],
        };
        self.modify_as_admin(&user.dn, mods).await;
    }

    /// Unlocks `user` as the bot's service account does (AD: `lockoutTime`
    /// 0; OpenLDAP: delete `pwdAccountLockedTime`): proves the account's
    /// rights, and the smoke tests use it.
    pub async fn unlock(&self, user: &TestUser) -> LdapResult {
        let mods = match self.flavour {
            Flavour::ActiveDirectory => vec![Mod::Replace(
                b"lockoutTime".to_vec(),
                HashSet::from([b"0".to_vec()]),
            )],
            Flavour::OpenLdap => vec![Mod::Delete(
                b"pwdAccountLockedTime".to_vec(),
                HashSet::new(),
            )],
        };
        let mut service = self.service().await;
        let result = service
            .with_timeout(Duration::from_secs(30))
            .modify(&user.dn, mods)
            .await
            .expect("modify round trip");
        let _ = service.unbind().await;
        result
    }

    /// Resets `user`'s password to `password`, must change at next sign-in,
    /// as the bot's service account does (AD: one modify of `unicodePwd`
    /// then `pwdLastSet` 0; OpenLDAP: the password-modify operation, then
    /// `pwdReset: TRUE`, which ppolicy sets by itself only for a password
    /// administrator, one with `manage` access, whose resets skip the
    /// policy). Returns the first result that is not success (a policy
    /// refusal is 19), else success.
    pub async fn reset(&self, user: &TestUser, password: &str) -> LdapResult {
        let mut service = self.service().await;
        let result = match self.flavour {
            Flavour::ActiveDirectory => service
                .with_timeout(Duration::from_secs(30))
                .modify(
                    &user.dn,
                    vec![
                        Mod::Replace(
                            b"unicodePwd".to_vec(),
                            HashSet::from([unicode_pwd(password)]),
                        ),
                        Mod::Replace(b"pwdLastSet".to_vec(), HashSet::from([b"0".to_vec()])),
                    ],
                )
                .await
                .expect("modify round trip"),
            Flavour::OpenLdap => {
                let ldap3::result::ExopResult(_, result) = service
                    .with_timeout(Duration::from_secs(30))
                    .extended(PasswordModify {
                        user_id: Some(&user.dn),
                        old_pass: None,
                        new_pass: Some(password),
                    })
                    .await
                    .expect("password modify round trip");
                if result.rc != 0 {
                    result
                } else {
                    service
                        .with_timeout(Duration::from_secs(30))
                        .modify(
                            &user.dn,
                            vec![Mod::Replace(
                                b"pwdReset".to_vec(),
                                HashSet::from([b"TRUE".to_vec()]),
                            )],
                        )
                        .await
                        .expect("modify round trip")
                }
            }
        };
        let _ = service.unbind().await;
        result
    }

    /// Gives `user` a password policy of its own (AD: a fine-grained
    /// password settings object applied to the user; OpenLDAP: a ppolicy
    /// entry named by the user's `pwdPolicySubentry`), so a test can make
    /// passwords refused without touching other tests' accounts. Lockout
    /// stays at 3 bad passwords, and must-change on reset.
    pub async fn set_password_policy(&self, user: &TestUser, policy: PasswordPolicy) {
        let name = format!("policy-{}", unique_name());
        let bytes = |s: String| HashSet::from([s.into_bytes()]);
        let mut admin = self.admin().await;
        match self.flavour {
            Flavour::ActiveDirectory => {
                let dn = format!(
                    "CN={name},CN=Password Settings Container,CN=System,{}",
                    self.base_dn
                );
                let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
                    (
                        b"objectClass".to_vec(),
                        bytes("msDS-PasswordSettings".into()),
                    ),
                    (
                        b"msDS-PasswordSettingsPrecedence".to_vec(),
                        bytes("1".into()),
                    ),
                    (
                        b"msDS-PasswordReversibleEncryptionEnabled".to_vec(),
                        bytes("FALSE".into()),
                    ),
                    (
                        b"msDS-PasswordHistoryLength".to_vec(),
                        bytes(policy.history.to_string()),
                    ),
                    (
                        b"msDS-PasswordComplexityEnabled".to_vec(),
                        bytes(if policy.complexity { "TRUE" } else { "FALSE" }.into()),
                    ),
                    (
                        b"msDS-MinimumPasswordLength".to_vec(),
                        bytes(policy.min_length.to_string()),
                    ),
                    (b"msDS-MinimumPasswordAge".to_vec(), bytes("0".into())),
                    // 42 days, as the domain's default.
                    (
                        b"msDS-MaximumPasswordAge".to_vec(),
                        bytes("-36288000000000".into()),
                    ),
                    (b"msDS-LockoutThreshold".to_vec(), bytes("3".into())),
                    (
                        b"msDS-LockoutObservationWindow".to_vec(),
                        bytes("-18000000000".into()),
                    ),
                    (
                        b"msDS-LockoutDuration".to_vec(),
                        bytes("-18000000000".into()),
                    ),
                    (b"msDS-PSOAppliesTo".to_vec(), bytes(user.dn.clone())),
                ];
                admin
                    .add(&dn, attrs)
                    .await
                    .and_then(LdapResult::success)
                    .unwrap_or_else(|e| panic!("adding the password settings {dn}: {e}"));
            }
            Flavour::OpenLdap => {
                let parent = self
                    .policy_dn
                    .as_deref()
                    .and_then(|p| p.split_once(','))
                    .map(|(_, parent)| parent.to_owned())
                    .expect("policy DN");
                let dn = format!("cn={name},{parent}");
                let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
                    (
                        b"objectClass".to_vec(),
                        HashSet::from([b"device".to_vec(), b"pwdPolicy".to_vec()]),
                    ),
                    (b"cn".to_vec(), bytes(name.clone())),
                    (b"pwdAttribute".to_vec(), bytes("userPassword".into())),
                    (b"pwdLockout".to_vec(), bytes("TRUE".into())),
                    (b"pwdMaxFailure".to_vec(), bytes("3".into())),
                    (b"pwdMustChange".to_vec(), bytes("TRUE".into())),
                    (b"pwdAllowUserChange".to_vec(), bytes("TRUE".into())),
                    (b"pwdInHistory".to_vec(), bytes(policy.history.to_string())),
                    (
                        b"pwdMinLength".to_vec(),
                        bytes(policy.min_length.to_string()),
                    ),
                    (b"pwdCheckQuality".to_vec(), bytes("2".into())),
                ];
                admin
                    .add(&dn, attrs)
                    .await
                    .and_then(LdapResult::success)
                    .unwrap_or_else(|e| panic!("adding the password policy {dn}: {e}"));
                admin
                    .modify(
                        &user.dn,
                        vec![Mod::Replace(b"pwdPolicySubentry".to_vec(), bytes(dn))],
                    )
                    .await
                    .and_then(LdapResult::success)
                    .unwrap_or_else(|e| panic!("pointing {} at its policy: {e}", user.dn));
            }
        }
        let _ = admin.unbind().await;
    }

    async fn modify_as_admin(&self, dn: &str, mods: Vec<Mod<Vec<u8>>>) {
        let mut admin = self.admin().await;
        admin
            .with_timeout(Duration::from_secs(30))
            .modify(dn, mods)
            .await
            .and_then(LdapResult::success)
            .unwrap_or_else(|e| panic!("modifying {dn}: {e}"));
        let _ = admin.unbind().await;
    }

    /// A relay in front of this server that the test can cut or stall: give
    /// the bot [`Gate::url`] (or `bot_env_with_url(gate.url())`). The
    /// certificate still matches (it names 127.0.0.1).
    pub async fn gate(&self) -> Gate {
        let target = self
            .url
            .rsplit_once("://")
            .map(|(_, hostport)| hostport.trim_end_matches('/'))
            .expect("URL with a scheme");
        let scheme = self.url.split_once("://").expect("scheme").0;
        Gate::start(scheme, target.parse().expect("host:port"))
    }

    /// Stops a [`private_slapd`] (really: the process ends; its data stay).
    /// Panics on a shared server: other tests use it; use a [`Gate`].
    pub async fn stop(&self) {
        self.private_script("stop").await;
    }

    /// Starts a stopped [`private_slapd`] again, with its data as they were.
    pub async fn start(&self) {
        self.private_script("start").await;
    }

    async fn private_script(&self, command: &'static str) {
        let place = self
            .private
            .as_ref()
            .map(PrivateSlapd::place)
            .expect("only a private slapd may be stopped and started; use a gate() in front of a shared server");
        tokio::task::spawn_blocking(move || {
            if let Err(Unavailable(why)) = run_script(Flavour::OpenLdap, command, Some(place)) {
                panic!("slapd.sh {command}: {why}");
            }
        })
        .await
        .expect("slapd.sh");
    }
}

impl Drop for DirectoryServer {
    fn drop(&mut self) {
        if let Some(private) = &self.private {
            let _ = run_script(Flavour::OpenLdap, "reset", Some(private.place()));
        }
    }
}

/// OpenLDAP's value of `pwdAccountLockedTime` for an administrator's
/// permanent lock.
pub const PERMANENT_LOCK: &str = "000001010000Z";

/// What to give a new account; everything left out is made up (unique name
/// and email, a unique UK mobile, "Test Trust", `Initial-Pass-1`).
#[derive(Default, Clone, Debug)]
pub struct NewUser {
    pub name: Option<String>,
    pub email: Option<String>,
    /// Any string: a test may give a number that is not a UK mobile, or
    /// `Some(String::new())` for none at all.
    pub mobile: Option<String>,
    pub organisation: Option<String>,
    pub password: Option<String>,
}

impl NewUser {
    pub fn mobile(mut self, mobile: &str) -> Self {
        self.mobile = Some(mobile.to_owned());
        self
    }
    pub fn organisation(mut self, organisation: &str) -> Self {
        self.organisation = Some(organisation.to_owned());
        self
    }
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }
    pub fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }
}

/// An account made by [`DirectoryServer::create_user`].
#[derive(Clone, Debug)]
pub struct TestUser {
    pub dn: String,
    /// What the user binds as: the UPN (`name@test.lan`) on AD, the DN on
    /// OpenLDAP.
    pub login: String,
    pub email: String,
    pub mobile: String,
    pub organisation: String,
    /// The password it was created with.
    pub password: String,
}

/// What the directory says about an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// Locked by failed sign-ins (AD: bit 0x10 of
    /// msDS-User-Account-Control-Computed; OpenLDAP: pwdAccountLockedTime,
    /// other than the permanent lock).
    pub locked: bool,
    /// Disabled by an administrator (AD: userAccountControl bit 0x2;
    /// OpenLDAP: the permanent lock).
    pub disabled: bool,
    /// Must change the password at next sign-in (AD: pwdLastSet 0;
    /// OpenLDAP: pwdReset TRUE).
    pub must_change: bool,
}

/// The answer to a bind.
#[derive(Clone, Debug)]
pub struct BindAnswer {
    /// The LDAP result code: 0 success, 49 invalid credentials (also a
    /// locked account, and on AD a disabled or must-change one).
    pub rc: u32,
    /// The diagnostic text; AD's carries `data NNN`.
    pub text: String,
    /// OpenLDAP only: the bind worked but the connection may do nothing
    /// but change the password (pwdReset).
    pub restricted: bool,
}

impl BindAnswer {
    /// Signed in with full use of the account.
    pub fn signed_in(&self) -> bool {
        self.rc == 0 && !self.restricted
    }
    /// AD's reason code from `data NNN` in the text: `52e` wrong password,
    /// `775` locked, `533` disabled, `773` must change the password.
    pub fn ad_data(&self) -> Option<&str> {
        let rest = &self.text[self.text.find("data ")? + 5..];
        let end = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

/// A password policy for one account ([`DirectoryServer::set_password_policy`]).
#[derive(Clone, Copy, Debug)]
pub struct PasswordPolicy {
    pub min_length: u32,
    /// How many earlier passwords may not be used again.
    pub history: u32,
    /// AD complexity (3 of 4 character kinds, not the account's name);
    /// OpenLDAP checks only the length.
    pub complexity: bool,
}

impl PasswordPolicy {
    /// A policy no generated temporary password can meet: a minimum length
    /// of 200.
    pub fn refuse_all() -> Self {
        PasswordPolicy {
            min_length: 200,
            history: 24,
            complexity: true,
        }
    }
}

/// AD's `unicodePwd` value: the password in double quotes, UTF-16LE.
pub fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A name no other test (in this run or an earlier one against the same
/// server) has used: at most 20 characters, for AD's sAMAccountName.
pub fn unique_name() -> String {
    format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..15])
}

/// A UK mobile number (+447811 and six random digits).
pub fn unique_mobile() -> String {
    format!("+447811{:06}", rand::random_range(0..1_000_000u32))
}

/// A TCP relay to a directory server that a test can cut (connections
/// closed, new ones closed at once) or stall (nothing passes, nothing
/// closes: the bot's operations time out), and open again.
pub struct Gate {
    url: String,
    mode: watch::Sender<GateMode>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The relay runs on a thread and runtime of its own, so it keeps
    /// relaying while the test blocks its own thread (waiting for a CLI
    /// process, say).
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateMode {
    Open,
    Cut,
    Stalled,
}

impl Gate {
    fn start(scheme: &str, target: SocketAddr) -> Gate {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("gate listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("gate address").port();
        let (mode, _) = watch::channel(GateMode::Open);
        let modes = mode.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("gate runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("gate listener");
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(relay(client, target, modes.subscribe()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends every relay and closes its sockets.
        });
        Gate {
            url: format!("{scheme}://127.0.0.1:{port}"),
            mode,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL to give the bot instead of the server's.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The directory goes away: open connections are closed, new ones are
    /// closed as soon as they are made.
    pub fn cut(&self) {
        self.mode.send_replace(GateMode::Cut);
    }
    /// The directory stops answering: nothing passes either way, nothing is
    /// closed.
    pub fn stall(&self) {
        self.mode.send_replace(GateMode::Stalled);
    }
    /// The directory is back.
    pub fn open(&self) {
        self.mode.send_replace(GateMode::Open);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.mode.send_replace(GateMode::Cut);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<GateMode>) {
    // A connection made while stalled waits; one made while cut is dropped.
    loop {
        let now = *mode.borrow_and_update();
        match now {
            GateMode::Open => break,
            GateMode::Cut => return,
            GateMode::Stalled => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
        }
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        let now = *mode.borrow_and_update();
        match now {
            GateMode::Cut => return,
            GateMode::Stalled => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            GateMode::Open => {}
        }
        tokio::select! {
            read = from_client.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if to_server.write_all(&up[..n]).await.is_err() { return },
            },
            read = from_server.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if to_client.write_all(&down[..n]).await.is_err() { return },
            },
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
}

// Smoke tests: the kit and the servers do what the LDAP tests rely on.

async fn lock_unlock_reset(server: &DirectoryServer) {
    let user = server.create_user(NewUser::default()).await;
    assert!(server.bind(&user.login, &user.password).await.signed_in());
    assert_eq!(
        server.state(&user).await,
        AccountState {
            locked: false,
            disabled: false,
            must_change: false
        }
    );

    server.lock_by_failed_binds(&user).await;
    let locked = server.bind(&user.login, &user.password).await;
    assert!(!locked.signed_in(), "a locked account signed in");
    if server.flavour() == Flavour::ActiveDirectory {
        assert_eq!(locked.ad_data(), Some("775"), "{locked:?}");
    }

    let unlocked = server.unlock(&user).await;
    assert_eq!(unlocked.rc, 0, "the service account's unlock: {unlocked:?}");
    assert!(!server.state(&user).await.locked);
    assert!(
        server.bind(&user.login, &user.password).await.signed_in(),
        "the old password binds again after the unlock"
    );

    let reset = server.reset(&user, "Temp-Pass-77x").await;
    assert_eq!(reset.rc, 0, "the service account's reset: {reset:?}");
    assert!(server.state(&user).await.must_change);
    let old = server.bind(&user.login, &user.password).await;
    assert_eq!(old.rc, 49, "the old password no longer binds: {old:?}");
    let new = server.bind(&user.login, "Temp-Pass-77x").await;
    match server.flavour() {
        Flavour::ActiveDirectory => assert_eq!(new.ad_data(), Some("773"), "{new:?}"),
        Flavour::OpenLdap => {
            assert_eq!(new.rc, 0, "{new:?}");
            assert!(new.restricted, "pwdReset restricts the connection: {new:?}");
        }
    }
}

async fn disable_refuses(server: &DirectoryServer) {
    let user = server.create_user(NewUser::default()).await;
    server.disable(&user).await;
    let state = server.state(&user).await;
    assert!(state.disabled && !state.locked, "{state:?}");
    let answer = server.bind(&user.login, &user.password).await;
    assert!(!answer.signed_in(), "a disabled account signed in");
    if server.flavour() == Flavour::ActiveDirectory {
        assert_eq!(answer.ad_data(), Some("533"), "{answer:?}");
    }
}

async fn policy_refuses(server: &DirectoryServer) {
    let user = server.create_user(NewUser::default()).await;
    // The standard policy refuses a short password with 19 ...
    let short = server.reset(&user, "Sh0rt!").await;
    assert_eq!(short.rc, 19, "{short:?}");
    if server.flavour() == Flavour::ActiveDirectory {
        assert!(short.text.contains("0000052D"), "{short:?}");
    }
    // ... and a policy of the account's own refuses every password, while
    // another account's reset still works.
    server
        .set_password_policy(&user, PasswordPolicy::refuse_all())
        .await;
    let refused = server.reset(&user, "A-Long-Temporary-Pass-9").await;
    assert_eq!(refused.rc, 19, "{refused:?}");
    assert!(server.bind(&user.login, &user.password).await.signed_in());
    let other = server.create_user(NewUser::default()).await;
    assert_eq!(server.reset(&other, "A-Long-Temporary-Pass-9").await.rc, 0);
}

async fn service_account_writes_nothing_else(server: &DirectoryServer) {
    let user = server.create_user(NewUser::default()).await;
    let mut service = server.service().await;
    let result = service
        .modify(
            &user.dn,
            vec![Mod::Replace(
                b"mobile".to_vec(),
                HashSet::from([b"+447811000000".to_vec()]),
            )],
        )
        .await
        .expect("modify round trip");
    assert_eq!(
        result.rc, 50,
        "the service account changed a mobile: {result:?}"
    );
}

async fn gate_cuts_and_reopens(server: &DirectoryServer) {
    let gate = server.gate().await;
    let through = server.connect_to(gate.url()).await;
    let mut ldap = through.expect("connecting through the gate");
    ldap.simple_bind(server.bind_dn(), server.bind_password())
        .await
        .and_then(LdapResult::success)
        .expect("bind through the gate");
    gate.cut();
    let after = ldap
        .with_timeout(Duration::from_secs(10))
        .search(
            server.base_dn(),
            Scope::Base,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await;
    assert!(after.is_err(), "a cut connection still answered: {after:?}");
    assert!(server.connect_to(gate.url()).await.is_err());
    gate.open();
    let mut again = server.connect_to(gate.url()).await.expect("reconnecting");
    again
        .simple_bind(server.bind_dn(), server.bind_password())
        .await
        .and_then(LdapResult::success)
        .expect("bind after the gate opened");
}

/// What the bot is given (`bot_env`) reaches the server over TLS as the
/// service account, which finds a user by email from the base DN (skipping
/// AD's search references) and reads every attribute the bot needs.
async fn service_account_reads_what_the_bot_needs(server: &DirectoryServer) {
    let name = unique_name();
    let user = server
        .create_user(
            NewUser::default()
                .email(&format!("{name}.Jones@nhs.test"))
                .mobile(&unique_mobile())
                .organisation("Leeds Teaching Hospitals")
                .password("Own-Pass-4u"),
        )
        .await;
    assert!(user.dn.ends_with(server.people_dn()), "{user:?}");
    assert!(server.bind(&user.login, "Own-Pass-4u").await.signed_in());
    server.lock_by_failed_binds(&user).await;
    let env: HashMap<_, _> = server.bot_env().into_iter().collect();
    assert_eq!(env["DIRECTORY"], "ldap");
    assert_eq!(env["LDAP_FLAVOUR"], server.flavour().setting());
    assert_eq!(Path::new(&env["LDAP_CA_FILE"]), server.ca_file());
    let mut ldap = server
        .connect_to(&env["LDAP_URL"])
        .await
        .expect("connecting with the bot's settings");
    ldap.simple_bind(&env["LDAP_BIND_DN"], &env["LDAP_BIND_PASSWORD"])
        .await
        .and_then(LdapResult::success)
        .expect("binding with the bot's settings");
    let (id, lock) = match server.flavour() {
        Flavour::ActiveDirectory => ("objectGUID", "msDS-User-Account-Control-Computed"),
        Flavour::OpenLdap => ("entryUUID", "pwdAccountLockedTime"),
    };
    let org = &env["LDAP_ORGANISATION_ATTRIBUTE"];
    let synced = &env["LDAP_SYNCED_AT_ATTRIBUTE"];
    let (entries, _) = ldap
        .search(
            &env["LDAP_BASE_DN"],
            Scope::Subtree,
            &format!("(mail={})", ldap3::ldap_escape(&user.email)),
            vec!["mail", "mobile", org.as_str(), synced.as_str(), id],
        )
        .await
        .and_then(ldap3::SearchResult::success)
        .expect("searching by mail");
    let found: Vec<_> = entries
        .into_iter()
        .filter(|e| !e.is_ref())
        .map(SearchEntry::construct)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let entry = &found[0];
    assert_eq!(entry.dn.to_lowercase(), user.dn.to_lowercase());
    assert_eq!(entry.attrs["mobile"], vec![user.mobile.clone()]);
    assert_eq!(entry.attrs[org.as_str()], vec![user.organisation.clone()]);
    assert!(entry.attrs.contains_key(synced.as_str()), "{entry:?}");
    let stable_id = entry
        .bin_attrs
        .get(id)
        .map(Vec::len)
        .or_else(|| entry.attrs.get(id).map(Vec::len));
    assert_eq!(stable_id, Some(1), "{entry:?}");
    // The lock is read with a base-scope search of the user's DN (AD
    // computes msDS-User-Account-Control-Computed only there).
    let (entries, _) = ldap
        .search(&user.dn, Scope::Base, "(objectClass=*)", vec![lock])
        .await
        .and_then(ldap3::SearchResult::success)
        .expect("reading the lock");
    let entry = SearchEntry::construct(entries.into_iter().next().expect("the entry"));
    assert!(entry.attrs.contains_key(lock), "{entry:?}");
}

/// A simple bind without TLS is refused: the bot cannot send a password in
/// clear to these servers even by mistake.
async fn refuses_binds_in_clear(server: &DirectoryServer) {
    let url = server.starttls_url().to_owned();
    let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10));
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
        .await
        .expect("plain connection");
    ldap3::drive!(conn);
    let result = ldap
        .simple_bind(server.bind_dn(), server.bind_password())
        .await
        .expect("bind round trip");
    // 13 confidentialityRequired (slapd), 8 strongAuthRequired (AD).
    assert!(matches!(result.rc, 8 | 13), "{result:?}");
    // StartTLS on the same URL works.
    let mut tls = server.connect_to(&url).await.expect("StartTLS");
    tls.simple_bind(server.bind_dn(), server.bind_password())
        .await
        .and_then(LdapResult::success)
        .expect("bind after StartTLS");
}

/// The gate keeps relaying while the test's own thread blocks (as when it
/// waits for a CLI process): a bind on another thread goes through while
/// this (single-threaded) test runtime is blocked.
async fn gate_relays_while_the_test_blocks(server: &DirectoryServer) {
    let gate = server.gate().await;
    let url = gate.url().to_owned();
    let tls = server.tls.clone();
    let (dn, password) = (
        server.bind_dn().to_owned(),
        server.bind_password().to_owned(),
    );
    let other = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let settings = LdapConnSettings::new()
                .set_config(tls)
                .set_starttls(url.starts_with("ldap://"))
                .set_conn_timeout(Duration::from_secs(10));
            let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url).await?;
            ldap3::drive!(conn);
            ldap.simple_bind(&dn, &password).await?.success()
        })
    });
    // Blocks this test's only runtime thread until the bind is done.
    let bound = other.join().expect("the other thread");
    assert!(bound.is_ok(), "{bound:?}");
}

async fn gate_stalls(server: &DirectoryServer) {
    let gate = server.gate().await;
    let mut ldap = server
        .connect_to(gate.url())
        .await
        .expect("connecting through the gate");
    ldap.simple_bind(server.bind_dn(), server.bind_password())
        .await
        .and_then(LdapResult::success)
        .expect("bind through the gate");
    gate.stall();
    let stalled = ldap
        .with_timeout(Duration::from_millis(500))
        .search(
            server.base_dn(),
            Scope::Base,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await;
    assert!(
        matches!(stalled, Err(ldap3::LdapError::Timeout { .. })),
        "a stalled directory answered: {stalled:?}"
    );
}

#[tokio::test]
async fn slapd_service_account_reads_what_the_bot_needs() {
    let Some(server) = slapd().await else { return };
    service_account_reads_what_the_bot_needs(server).await;
}

#[tokio::test]
async fn samba_service_account_reads_what_the_bot_needs() {
    let Some(server) = samba().await else { return };
    service_account_reads_what_the_bot_needs(server).await;
}

#[tokio::test]
async fn slapd_refuses_binds_in_clear() {
    let Some(server) = slapd().await else { return };
    refuses_binds_in_clear(server).await;
}

#[tokio::test]
async fn samba_refuses_binds_in_clear() {
    let Some(server) = samba().await else { return };
    refuses_binds_in_clear(server).await;
}

#[tokio::test]
async fn slapd_gate_relays_while_the_test_blocks() {
    let Some(server) = slapd().await else { return };
    gate_relays_while_the_test_blocks(server).await;
}

#[tokio::test]
async fn samba_gate_relays_while_the_test_blocks() {
    let Some(server) = samba().await else { return };
    gate_relays_while_the_test_blocks(server).await;
}

#[tokio::test]
async fn slapd_gate_stalls() {
    let Some(server) = slapd().await else { return };
    gate_stalls(server).await;
}

#[tokio::test]
async fn samba_gate_stalls() {
    let Some(server) = samba().await else { return };
    gate_stalls(server).await;
}

#[tokio::test]
async fn slapd_lock_unlock_reset() {
    let Some(server) = slapd().await else { return };
    lock_unlock_reset(server).await;
}

#[tokio::test]
async fn samba_lock_unlock_reset() {
    let Some(server) = samba().await else { return };
    lock_unlock_reset(server).await;
}

#[tokio::test]
async fn slapd_disabled_account() {
    let Some(server) = slapd().await else { return };
    disable_refuses(server).await;
}

#[tokio::test]
async fn samba_disabled_account() {
    let Some(server) = samba().await else { return };
    disable_refuses(server).await;
}

#[tokio::test]
async fn slapd_policy_refusal() {
    let Some(server) = slapd().await else { return };
    policy_refuses(server).await;
}

#[tokio::test]
async fn samba_policy_refusal() {
    let Some(server) = samba().await else { return };
    policy_refuses(server).await;
}

#[tokio::test]
async fn slapd_service_account_is_limited() {
    let Some(server) = slapd().await else { return };
    service_account_writes_nothing_else(server).await;
}

#[tokio::test]
async fn samba_service_account_is_limited() {
    let Some(server) = samba().await else { return };
    service_account_writes_nothing_else(server).await;
}

#[tokio::test]
async fn slapd_gate_cuts_and_reopens() {
    let Some(server) = slapd().await else { return };
    gate_cuts_and_reopens(server).await;
}

#[tokio::test]
async fn samba_gate_cuts_and_reopens() {
    let Some(server) = samba().await else { return };
    gate_cuts_and_reopens(server).await;
}

#[tokio::test]
async fn private_slapd_stops_and_starts_with_its_data() {
    let Some(server) = private_slapd().await else {
        return;
    };
    let user = server.create_user(NewUser::default()).await;
    server.stop().await;
    assert!(server.connect_to(server.url()).await.is_err());
    server.start().await;
    assert!(server.bind(&user.login, &user.password).await.signed_in());
}
