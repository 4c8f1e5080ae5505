//! An LDAP directory: Active Directory (or Samba as an AD domain
//! controller) and OpenLDAP with the password-policy overlay.
//!
//! Simple binds only over TLS (`ldaps://`, or `ldap://` with StartTLS, never
//! in clear), a small pool of bound connections, and a timeout on every
//! operation. The flavours differ only in how an account's lockout,
//! disabled state and password are read and written; see [`Flavour`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, Semaphore};

use super::{
    Account, AccountCommand, AccountId, AccountRef, AccountView, DECOY_MOBILE, DECOY_ORGANISATION,
    Directory, DirectoryError, Disabled, password_lifetime,
};
use crate::domain::{Email, RegisteredMobile, parse_registered_mobile};

/// The decoy entry's `mail` (never looked up: the decoy is only decoded).
const DECOY_MAIL: &str = "decoy@nhs.net";

/// Which kind of LDAP server (`LDAP_FLAVOUR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    ActiveDirectory,
    OpenLdap,
}

impl Flavour {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "active_directory" => Some(Self::ActiveDirectory),
            "openldap" => Some(Self::OpenLdap),
            _ => None,
        }
    }

    /// The default user filter; `{email}` is replaced by the escaped address.
    pub fn default_user_filter(self) -> &'static str {
        match self {
            Self::ActiveDirectory => {
                "(&(objectClass=user)(|(mail={email})(userPrincipalName={email})))"
            }
            Self::OpenLdap => "(mail={email})",
        }
    }

    /// The default attribute saying when an account was created or moved.
    pub fn default_synced_at_attribute(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "whenCreated",
            // OpenLDAP has no whenCreated; its operational equivalent.
            Self::OpenLdap => "createTimestamp",
        }
    }
}

/// The LDAP directory's settings (read from `LDAP_*` by the settings).
#[derive(Clone)]
pub struct LdapConfig {
    /// `ldaps://host[:port]` or `ldap://host[:port]` (always StartTLS).
    pub url: String,
    pub flavour: Flavour,
    pub bind_dn: String,
    pub bind_password: SecretString,
    pub base_dn: String,
    /// The directory's CA certificate(s), PEM.
    pub ca_file: PathBuf,
    /// With `{email}` where the address goes.
    pub user_filter: String,
    pub mobile_attribute: String,
    pub organisation_attribute: String,
    pub synced_at_attribute: String,
    /// Organisations (as in `organisation_attribute`) that have adopted Same Sign On.
    pub same_sign_on_organisations: Vec<String>,
    /// Connecting, binding and every operation.
    pub timeout: Duration,
    /// Bound connections kept open.
    pub pool_size: usize,
    pub allow_crown_dependencies: bool,
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("flavour", &self.flavour)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .finish_non_exhaustive()
    }
}

/// Active Directory `userAccountControl`: ACCOUNTDISABLE.
const UAC_ACCOUNTDISABLE: u64 = 0x2;
/// Active Directory `msDS-User-Account-Control-Computed`: LOCKOUT.
const UAC_LOCKOUT: u64 = 0x10;
/// OpenLDAP ppolicy: an administrator's lock that never expires.
const PERMANENT_LOCK: &str = "000001010000Z";
/// LDAP result codes.
const RC_CONSTRAINT_VIOLATION: u32 = 19;
const RC_INSUFFICIENT_ACCESS: u32 = 50;

pub struct LdapDirectory {
    config: LdapConfig,
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<Vec<Ldap>>,
    slots: Semaphore,
}

fn unavailable(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

/// What an LDAP error means for a change.
fn refusal(flavour: Flavour, e: LdapError) -> DirectoryError {
    match e {
        LdapError::LdapResult { result } => {
            let policy = result.rc == RC_CONSTRAINT_VIOLATION
                && (flavour == Flavour::OpenLdap || result.text.contains("0000052D"));
            if policy {
                DirectoryError::RefusedByPolicy(result.text)
            } else if result.rc == RC_INSUFFICIENT_ACCESS {
                DirectoryError::Refused(format!(
                    "the service account (LDAP_BIND_DN) may not make this change: {}",
                    result.text
                ))
            } else {
                DirectoryError::Refused(format!("LDAP result {}: {}", result.rc, result.text))
            }
        }
        other => unavailable(other),
    }
}

fn tls_config(ca_file: &PathBuf) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("cannot read {} (LDAP_CA_FILE): {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("LDAP_CA_FILE is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("LDAP_CA_FILE holds a certificate rustls rejects: {e}"))?;
    }
    if roots.is_empty() {
        return Err("LDAP_CA_FILE holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An LDAP GeneralizedTime (`20261127140000Z`, `20261127140000.0Z`).
fn generalized_time(s: &str) -> Option<DateTime<Utc>> {
    let digits = s.trim_end_matches('Z');
    let digits = digits.split(['.', ',']).next()?;
    NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| Utc.from_utc_datetime(&t))
}

/// An Active Directory FILETIME (100 ns since 1601); 0 means never.
fn filetime(s: &str) -> Option<DateTime<Utc>> {
    let ticks: i64 = s.trim().parse().ok()?;
    if ticks <= 0 {
        return None;
    }
    const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
    DateTime::from_timestamp(ticks / 10_000_000 - EPOCH_DIFF_SECS, 0)
}

/// An AD `objectGUID` as the usual text form (its first three fields are
/// little-endian).
fn guid(bytes: &[u8]) -> Option<String> {
    let b: [u8; 16] = bytes.try_into().ok()?;
    let mut ordered = b;
    ordered[0..4].reverse();
    ordered[4..6].reverse();
    ordered[6..8].reverse();
    Some(uuid::Uuid::from_bytes(ordered).to_string())
}

/// `"password"` (with the quotes) in UTF-16LE, as `unicodePwd` wants it.
fn unicode_pwd(password: &str) -> zeroize::Zeroizing<Vec<u8>> {
    let quoted = zeroize::Zeroizing::new(format!("\"{password}\""));
    zeroize::Zeroizing::new(
        quoted
            .encode_utf16()
            .flat_map(|unit| unit.to_le_bytes())
            .collect(),
    )
}

fn first<'a>(entry: &'a SearchEntry, attribute: &str) -> Option<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .and_then(|(_, values)| values.first())
        .map(String::as_str)
}

fn first_bin<'a>(entry: &'a SearchEntry, attribute: &str) -> Option<&'a [u8]> {
    entry
        .bin_attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .and_then(|(_, values)| values.first())
        .map(Vec::as_slice)
        .or_else(|| first(entry, attribute).map(str::as_bytes))
}

/// An account as read, with the detail `view` and `directory check` show.
struct Read {
    account: Account,
    disabled_reason: Option<&'static str>,
    /// Raw values for `directory check`.
    raw: Vec<(String, String)>,
}

impl LdapDirectory {
    /// Check the settings and make one bound connection, so that a
    /// directory that cannot be reached over TLS stops start-up.
    pub async fn connect(config: LdapConfig) -> Result<Self, DirectoryError> {
        if !(config.url.starts_with("ldaps://") || config.url.starts_with("ldap://")) {
            return Err(DirectoryError::Unavailable(format!(
                "LDAP_URL must be ldaps://… or ldap://… (with StartTLS), not {}",
                config.url
            )));
        }
        let tls = Arc::new(tls_config(&config.ca_file).map_err(DirectoryError::Unavailable)?);
        let directory = Self {
            slots: Semaphore::new(config.pool_size.max(1)),
            idle: Mutex::new(Vec::new()),
            tls,
            config,
        };
        let ldap = directory.open().await?;
        directory.idle.lock().await.push(ldap);
        Ok(directory)
    }

    /// A new connection, over TLS, bound as the service account.
    async fn open(&self) -> Result<Ldap, DirectoryError> {
        let c = &self.config;
        let starttls = c.url.starts_with("ldap://");
        let settings = LdapConnSettings::new()
            .set_conn_timeout(c.timeout)
            .set_config(self.tls.clone())
            .set_starttls(starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &c.url)
            .await
            .map_err(|e| {
                DirectoryError::Unavailable(format!(
                    "cannot reach {} over TLS{} (LDAP_URL): {e}",
                    c.url,
                    if starttls { " (StartTLS)" } else { "" }
                ))
            })?;
        ldap3::drive!(conn);
        ldap.with_timeout(c.timeout)
            .simple_bind(&c.bind_dn, c.bind_password.expose_secret())
            .await
            .map_err(unavailable)?
            .success()
            .map_err(|e| {
                DirectoryError::Unavailable(format!(
                    "the directory refused the service account's bind (LDAP_BIND_DN, LDAP_BIND_PASSWORD): {e}"
                ))
            })?;
        Ok(ldap)
    }

    /// Run `op` on a pooled connection. A connection that failed is
    /// dropped, not returned to the pool.
    async fn with_conn<T, F>(&self, op: F) -> Result<T, DirectoryError>
    where
        F: for<'a> FnOnce(
            &'a mut Ldap,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<T, LdapError>> + Send + 'a>,
        >,
    {
        let _slot = self.slots.acquire().await.map_err(unavailable)?;
        let pooled = loop {
            match self.idle.lock().await.pop() {
                Some(mut ldap) => {
                    if !ldap.is_closed() {
                        break Some(ldap);
                    }
                }
                None => break None,
            }
        };
        let mut ldap = match pooled {
            Some(ldap) => ldap,
            None => self.open().await?,
        };
        ldap.with_timeout(self.config.timeout);
        let result = op(&mut ldap).await;
        let healthy = match &result {
            Ok(_) => true,
            // The server answered: the connection is fine.
            Err(LdapError::LdapResult { .. }) => true,
            Err(_) => false,
        };
        if healthy && !ldap.is_closed() {
            self.idle.lock().await.push(ldap);
        }
        result.map_err(|e| match e {
            LdapError::LdapResult { .. } => refusal(self.config.flavour, e),
            other => unavailable(other),
        })
    }

    fn attributes(&self) -> Vec<String> {
        let c = &self.config;
        let mut attrs = vec![
            "mail".to_owned(),
            c.mobile_attribute.clone(),
            c.organisation_attribute.clone(),
            c.synced_at_attribute.clone(),
        ];
        attrs.extend(
            match c.flavour {
                Flavour::ActiveDirectory => &[
                    "objectGUID",
                    "userAccountControl",
                    "pwdLastSet",
                    "lockoutTime",
                ][..],
                Flavour::OpenLdap => &[
                    "entryUUID",
                    "pwdAccountLockedTime",
                    "pwdChangedTime",
                    "pwdReset",
                ][..],
            }
            .iter()
            .map(|a| (*a).to_owned()),
        );
        attrs
    }

    async fn read(&self, email: &Email) -> Result<Option<Read>, DirectoryError> {
        let filter = self
            .config
            .user_filter
            .replace("{email}", &ldap3::ldap_escape(email.as_str()));
        let base = self.config.base_dn.clone();
        let attrs = self.attributes();
        let flavour = self.config.flavour;
        let found = self
            .with_conn(move |ldap| {
                Box::pin(async move {
                    let (entries, _) = ldap
                        .search(&base, Scope::Subtree, &filter, attrs)
                        .await?
                        .success()?;
                    let mut users: Vec<SearchEntry> = entries
                        .into_iter()
                        // Search references from the domain root are skipped.
                        .filter(|e| !e.is_ref())
                        .map(SearchEntry::construct)
                        .collect();
                    if users.len() != 1 {
                        if flavour == Flavour::ActiveDirectory {
                            // The second round trip a found account takes
                            // (below), on the base entry, so that an unknown
                            // email is not answered a round trip sooner.
                            // Its answer is not needed.
                            let _ = ldap
                                .search(
                                    &base,
                                    Scope::Base,
                                    "(objectClass=*)",
                                    vec!["msDS-User-Account-Control-Computed"],
                                )
                                .await;
                        }
                        return Ok((users.len(), None));
                    }
                    let mut user = users.remove(0);
                    if flavour == Flavour::ActiveDirectory {
                        // A constructed attribute: only a base-scope search returns it.
                        let (computed, _) = ldap
                            .search(
                                &user.dn,
                                Scope::Base,
                                "(objectClass=*)",
                                vec!["msDS-User-Account-Control-Computed"],
                            )
                            .await?
                            .success()?;
                        if let Some(entry) = computed.into_iter().next() {
                            user.attrs.extend(SearchEntry::construct(entry).attrs);
                        }
                    }
                    Ok((1, Some(user)))
                })
            })
            .await?;
        if found.1.is_none() {
            // Decode a decoy entry as a found one is, so that the look-up
            // costs the same (see `DECOY_MOBILE`).
            std::hint::black_box(self.parse(email, &self.decoy_entry()));
        }
        match found {
            (_, Some(entry)) => Ok(Some(self.parse(email, &entry))),
            (0, None) => Ok(None),
            (n, None) => {
                tracing::warn!(
                    matches = n,
                    "LDAP_USER_FILTER matched several entries for one address; treated as unknown"
                );
                Ok(None)
            }
        }
    }

    /// An entry of the shape a found account's has (every attribute read,
    /// with values of the usual form), for an unknown email to decode.
    fn decoy_entry(&self) -> SearchEntry {
        let c = &self.config;
        let mut attrs: std::collections::HashMap<String, Vec<String>> = [
            ("mail", DECOY_MAIL),
            (c.mobile_attribute.as_str(), DECOY_MOBILE),
            (c.organisation_attribute.as_str(), DECOY_ORGANISATION),
            (c.synced_at_attribute.as_str(), "20240101090000.0Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), vec![v.to_owned()]))
        .collect();
        let mut bin_attrs = std::collections::HashMap::new();
        let flavour: &[(&str, &str)] = match c.flavour {
            Flavour::ActiveDirectory => {
                bin_attrs.insert("objectGUID".to_owned(), vec![vec![0x5a; 16]]);
                &[
                    ("userAccountControl", "512"),
                    ("pwdLastSet", "133500000000000000"),
                    ("lockoutTime", "0"),
                    ("msDS-User-Account-Control-Computed", "0"),
                ]
            }
            Flavour::OpenLdap => &[
                ("entryUUID", "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a"),
                ("pwdChangedTime", "20240101090000Z"),
            ],
        };
        attrs.extend(
            flavour
                .iter()
                .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()])),
        );
        SearchEntry {
            dn: format!("CN=Decoy,{}", c.base_dn),
            attrs,
            bin_attrs,
        }
    }

    fn parse(&self, email: &Email, entry: &SearchEntry) -> Read {
        let c = &self.config;
        let mobile = first(entry, &c.mobile_attribute)
            .and_then(|m| parse_registered_mobile(m, c.allow_crown_dependencies).ok());
        let organisation = first(entry, &c.organisation_attribute)
            .unwrap_or_default()
            .to_owned();
        let same_sign_on = c
            .same_sign_on_organisations
            .iter()
            .any(|o| o.eq_ignore_ascii_case(organisation.trim()));
        let synced_at = first(entry, &c.synced_at_attribute).and_then(generalized_time);
        let (id, locked, in_directory, must_change, password_set_at, reason) = match c.flavour {
            Flavour::ActiveDirectory => {
                let number = |a: &str| first(entry, a).and_then(|v| v.trim().parse::<i64>().ok());
                let uac = number("userAccountControl").unwrap_or_default() as u64;
                let computed =
                    number("msDS-User-Account-Control-Computed").unwrap_or_default() as u64;
                let pwd_last_set = first(entry, "pwdLastSet");
                (
                    first_bin(entry, "objectGUID").and_then(guid),
                    computed & UAC_LOCKOUT != 0,
                    uac & UAC_ACCOUNTDISABLE != 0,
                    pwd_last_set.map(str::trim) == Some("0"),
                    pwd_last_set.and_then(filetime),
                    "disabled in Active Directory",
                )
            }
            Flavour::OpenLdap => {
                let lock = first(entry, "pwdAccountLockedTime");
                (
                    first(entry, "entryUUID").map(str::to_owned),
                    lock.is_some_and(|l| l != PERMANENT_LOCK),
                    lock == Some(PERMANENT_LOCK),
                    first(entry, "pwdReset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
                    first(entry, "pwdChangedTime").and_then(generalized_time),
                    "locked permanently by an administrator",
                )
            }
        };
        let disabled = Account::disabled_given(&mobile, in_directory);
        let disabled_reason = match disabled {
            Some(Disabled::InDirectory) => Some(reason),
            Some(Disabled::NonUkMobile) => Some("registered mobile is not a UK mobile number"),
            None => None,
        };
        let mut raw: Vec<(String, String)> = entry
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.join("; ")))
            .collect();
        raw.sort();
        Read {
            account: Account {
                account: AccountRef {
                    // Without a stable id, the DN is the best there is.
                    id: AccountId::new(id.unwrap_or_else(|| entry.dn.clone())),
                    email: email.clone(),
                    locator: entry.dn.clone(),
                },
                mobile,
                organisation,
                same_sign_on,
                synced_at,
                locked,
                disabled,
                must_change_password: must_change,
                password_set_at,
            },
            disabled_reason,
            raw,
        }
    }

    /// What `unlockbot directory check` prints: the bind, the account as
    /// read, and whether the service account may write what unlock and
    /// reset need.
    pub async fn check(&self, email: &Email) -> Result<Vec<String>, DirectoryError> {
        let mut lines = vec![format!(
            "bound to {} as {} ({})",
            self.config.url,
            self.config.bind_dn,
            match self.config.flavour {
                Flavour::ActiveDirectory => "Active Directory",
                Flavour::OpenLdap => "OpenLDAP",
            }
        )];
        let Some(read) = self.read(email).await? else {
            lines.push(format!(
                "no account found for {email} under {} with {}",
                self.config.base_dn, self.config.user_filter
            ));
            return Ok(lines);
        };
        let a = &read.account;
        lines.push(format!("entry: {}", a.account.locator));
        lines.push(format!("stable id: {}", a.account.id.as_str()));
        for (name, value) in &read.raw {
            if !name.eq_ignore_ascii_case("objectGUID") {
                lines.push(format!("  {name}: {value}"));
            }
        }
        lines.push(format!(
            "registered mobile: {}",
            match &a.mobile {
                Some(RegisteredMobile::Uk(m)) => format!("{} (UK mobile)", m.as_e164()),
                Some(other) => format!("{} (NOT a UK mobile: self-service disabled)", other.e164()),
                None => "none (the user is sent to the Local Administrator)".into(),
            }
        ));
        lines.push(format!(
            "organisation: {} (Same Sign On: {})",
            a.organisation,
            if a.same_sign_on { "yes" } else { "no" }
        ));
        lines.push(format!(
            "locked: {}, disabled: {}, must change password: {}",
            a.locked,
            read.disabled_reason.unwrap_or("no"),
            a.must_change_password
        ));
        lines.extend(self.write_rights(&a.account.locator).await?);
        Ok(lines)
    }

    async fn write_rights(&self, dn: &str) -> Result<Vec<String>, DirectoryError> {
        let dn = dn.to_owned();
        let needed: &[&str] = match self.config.flavour {
            Flavour::ActiveDirectory => &["lockoutTime", "pwdLastSet", "unicodePwd"],
            Flavour::OpenLdap => &["userPassword", "pwdAccountLockedTime", "pwdReset"],
        };
        if self.config.flavour == Flavour::OpenLdap {
            // OpenLDAP has no effective-rights attribute by default.
            return Ok(vec![format!(
                "write rights: OpenLDAP cannot report them; the service account needs write access to {} (and the password-modify operation) on user entries",
                needed.join(", ")
            )]);
        }
        let allowed = self
            .with_conn(move |ldap| {
                Box::pin(async move {
                    let (entries, _) = ldap
                        .search(
                            &dn,
                            Scope::Base,
                            "(objectClass=*)",
                            vec!["allowedAttributesEffective"],
                        )
                        .await?
                        .success()?;
                    Ok(entries
                        .into_iter()
                        .next()
                        .map(SearchEntry::construct)
                        .and_then(|e| {
                            e.attrs
                                .into_iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("allowedAttributesEffective"))
                                .map(|(_, v)| v)
                        })
                        .unwrap_or_default())
                })
            })
            .await?;
        Ok(needed
            .iter()
            .map(|attribute| {
                let ok = allowed.iter().any(|a| a.eq_ignore_ascii_case(attribute));
                match (ok, *attribute) {
                    (true, _) => format!("may write {attribute}: yes"),
                    // Delegated resets come from the "Reset Password"
                    // extended right, which allowedAttributesEffective
                    // does not show.
                    (false, "unicodePwd") => "may write unicodePwd: not listed (fine if the service account has the Reset Password right; try a reset on a test account)".to_owned(),
                    (false, _) => {
                        format!("may write {attribute}: NO (unlock or reset will be refused)")
                    }
                }
            })
            .collect())
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn find(&self, email: &Email) -> Result<Option<Account>, DirectoryError> {
        Ok(self.read(email).await?.map(|r| r.account))
    }

    async fn apply(
        &self,
        command: &AccountCommand,
        _now: DateTime<Utc>,
    ) -> Result<(), DirectoryError> {
        let dn = command.account().locator.clone();
        match (self.config.flavour, command) {
            (Flavour::ActiveDirectory, AccountCommand::Unlock { .. }) => {
                self.modify(dn, vec![Mod::Replace(b"lockoutTime".to_vec(), set(b"0"))])
                    .await
            }
            (Flavour::ActiveDirectory, AccountCommand::SetTemporaryPassword { password, .. }) => {
                let value = unicode_pwd(password.expose_secret());
                // One modify: unlock, the password, then pwdLastSet = 0 (must
                // change at next sign-in; setting the password sets
                // pwdLastSet to now, so 0 must come after). All or nothing.
                self.modify(
                    dn,
                    vec![
                        Mod::Replace(b"lockoutTime".to_vec(), set(b"0")),
                        Mod::Replace(b"unicodePwd".to_vec(), set(&value)),
                        Mod::Replace(b"pwdLastSet".to_vec(), set(b"0")),
                    ],
                )
                .await
            }
            (Flavour::OpenLdap, AccountCommand::Unlock { .. }) => {
                self.openldap_unlock(dn, false).await
            }
            (Flavour::OpenLdap, AccountCommand::SetTemporaryPassword { password, .. }) => {
                let new = zeroize::Zeroizing::new(password.expose_secret().to_owned());
                let target = dn.clone();
                // The password first: a refusal (quality, history) leaves
                // the account exactly as it was.
                self.with_conn(move |ldap| {
                    Box::pin(async move {
                        ldap.extended(PasswordModify {
                            user_id: Some(&target),
                            old_pass: None,
                            new_pass: Some(new.as_str()),
                        })
                        .await?
                        .success()?;
                        Ok(())
                    })
                })
                .await?;
                // Then the lock and the must-change flag. Retried once: the
                // password is already set, and a text must not follow
                // unless the account can use it.
                match self.openldap_unlock(dn.clone(), true).await {
                    Ok(()) => Ok(()),
                    Err(first) => {
                        tracing::warn!(error = %first, "OpenLDAP: password set but unlock failed; retrying once");
                        self.openldap_unlock(dn, true).await
                    }
                }
            }
        }
    }

    async fn revert_temporary_password(
        &self,
        _email: &Email,
        _set_at: DateTime<Utc>,
    ) -> Result<bool, DirectoryError> {
        // The bot never learns an LDAP account's previous password.
        Ok(false)
    }

    async fn ping(&self) -> Result<(), DirectoryError> {
        self.with_conn(|ldap| {
            Box::pin(async move {
                ldap.search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
                    .await?
                    .success()?;
                Ok(())
            })
        })
        .await
    }

    async fn view(
        &self,
        email: &Email,
        _now: DateTime<Utc>,
    ) -> Result<Option<AccountView>, DirectoryError> {
        Ok(self.read(email).await?.map(|read| {
            let a = read.account;
            AccountView {
                email: a.account.email.as_str().to_owned(),
                mobile: a.mobile.as_ref().map(|m| m.e164().to_owned()),
                organisation: a.organisation,
                same_sign_on: a.same_sign_on,
                synced_at: a.synced_at,
                locked: a.locked,
                disabled: a.disabled.is_some(),
                disabled_reason: read.disabled_reason.map(str::to_owned),
                must_change_password: a.must_change_password,
                // Every directory account has one; it cannot be read.
                has_password: true,
                password_set_at: a.password_set_at,
                password_expires_at: a.password_set_at.map(|t| t + password_lifetime()),
                security_questions: Vec::new(),
            }
        }))
    }
}

impl LdapDirectory {
    /// One modify of one entry, all or nothing.
    async fn modify(&self, dn: String, mods: Vec<Mod<Vec<u8>>>) -> Result<(), DirectoryError> {
        self.with_conn(move |ldap| {
            Box::pin(async move {
                ldap.modify(&dn, mods).await?.success()?;
                Ok(())
            })
        })
        .await
    }

    /// OpenLDAP unlock: replacing `pwdAccountLockedTime` with no values
    /// deletes it if present, and ppolicy drops `pwdFailureTime` with it.
    /// After a reset, also `pwdReset: TRUE` (ppolicy sets it by itself only
    /// for a password administrator, which the service account is not).
    async fn openldap_unlock(&self, dn: String, must_change: bool) -> Result<(), DirectoryError> {
        let mut mods = vec![Mod::Replace(
            b"pwdAccountLockedTime".to_vec(),
            HashSet::new(),
        )];
        if must_change {
            mods.push(Mod::Replace(b"pwdReset".to_vec(), set(b"TRUE")));
        }
        self.modify(dn, mods).await
    }
}

fn set(value: &[u8]) -> HashSet<Vec<u8>> {
    HashSet::from([value.to_vec()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(
            unicode_pwd("Ab1").as_slice(),
            &[b'"', 0, b'A', 0, b'b', 0, b'1', 0, b'"', 0]
        );
    }

    #[test]
    fn generalized_times_from_both_servers() {
        let t = generalized_time("20261127140502.0Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T14:05:02+00:00");
        assert_eq!(generalized_time("20261127140502Z"), Some(t));
        assert_eq!(generalized_time("not a time"), None);
    }

    #[test]
    fn filetime_zero_is_never() {
        assert_eq!(filetime("0"), None);
        // 2021-01-01T00:00:00Z
        assert_eq!(
            filetime("132539328000000000").unwrap().to_rfc3339(),
            "2021-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn guid_text_form_swaps_the_first_three_fields() {
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid(&bytes).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(guid(b"short"), None);
    }

    #[test]
    fn policy_refusals_are_told_apart() {
        let result = |rc, text: &str| LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc,
                matched: String::new(),
                text: text.into(),
                refs: Vec::new(),
                ctrls: Vec::new(),
            },
        };
        assert!(matches!(
            refusal(
                Flavour::ActiveDirectory,
                result(19, "0000052D: Constraint violation")
            ),
            DirectoryError::RefusedByPolicy(_)
        ));
        assert!(matches!(
            refusal(Flavour::ActiveDirectory, result(19, "something else")),
            DirectoryError::Refused(_)
        ));
        assert!(matches!(
            refusal(
                Flavour::OpenLdap,
                result(19, "Password fails quality checking policy")
            ),
            DirectoryError::RefusedByPolicy(_)
        ));
        assert!(matches!(
            refusal(Flavour::OpenLdap, result(50, "no write access")),
            DirectoryError::Refused(_)
        ));
    }
}
