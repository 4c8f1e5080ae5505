//! The outbox: texts are written in the same transaction as the turn that
//! causes them, their secret part sealed (XChaCha20-Poly1305 under
//! `OUTBOX_KEY`, the outbox id as associated data), and delivered by a
//! worker in every instance, with retries and exponential backoff.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

use super::{OutboundSms, SendError, SmsKind, SmsSender};
use crate::clock::Clock;
use crate::directory::Directory;
use crate::domain::sealing::SealingKey;
use crate::domain::{Email, mask_phone_number, parse_uk_mobile};
use crate::retention::Retention;
use crate::store::{AuditEvent, NewOutboxItem, OutboxItem, ProcessedPrune, Store};

/// `OUTBOX_KEY`: 32 bytes, given as 64 hex characters.
#[derive(Clone)]
pub struct OutboxKey(SealingKey);

impl std::fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "OUTBOX_KEY must be 64 hexadecimal characters (32 bytes); `unlockbot keygen` prints one"
    )]
    BadKey,
    #[error("a queued text could not be decrypted (wrong OUTBOX_KEY, or tampered)")]
    Unseal,
    #[error("a text could not be encrypted")]
    Seal,
}

impl OutboxKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, OutboxError> {
        SealingKey::from_hex(hex_key)
            .map(Self)
            .map_err(|_| OutboxError::BadKey)
    }

    /// The key sender hashes are made with when no `SENDER_KEY` is set:
    /// derived from this one, never this one itself.
    pub fn sender_key(&self) -> crate::domain::SenderKey {
        crate::domain::SenderKey::derive_from(self.0.bytes())
    }

    /// The sealing key itself, for other secrets kept under `OUTBOX_KEY`
    /// (the Telegram chat ids of messages to delete), each sealed with
    /// associated data of its own kind and row.
    pub fn sealing_key(&self) -> &SealingKey {
        &self.0
    }

    /// A fresh random key (for `unlockbot keygen`, and for the console
    /// provider when none is configured).
    pub fn generate() -> Self {
        Self(SealingKey::generate())
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        self.0.to_hex()
    }
}

/// The secret part of a text: what is sealed in the outbox.
#[derive(Serialize, Deserialize)]
struct SealedContent {
    body: String,
    personalisation: Vec<(String, String)>,
}

impl Drop for SealedContent {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.body.zeroize();
        for (_, v) in &mut self.personalisation {
            v.zeroize();
        }
    }
}

/// Seal a text for the outbox row `id`: nonce (24 bytes) + ciphertext.
pub fn seal(key: &OutboxKey, id: uuid::Uuid, sms: &OutboundSms) -> Result<Vec<u8>, OutboxError> {
    let content = SealedContent {
        body: sms.body().to_owned(),
        personalisation: sms
            .personalisation
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect(),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&content).map_err(|_| OutboxError::Seal)?);
    key.0
        .seal(&plain, id.as_bytes())
        .map_err(|_| OutboxError::Seal)
}

/// Open a claimed item back into a text.
pub fn unseal(key: &OutboxKey, item: &OutboxItem) -> Result<OutboundSms, OutboxError> {
    let plain = key
        .0
        .open(&item.sealed, item.id.as_bytes())
        .map_err(|_| OutboxError::Unseal)?;
    let content: SealedContent = serde_json::from_slice(&plain).map_err(|_| OutboxError::Unseal)?;
    let to = parse_uk_mobile(&item.to, true).map_err(|_| OutboxError::Unseal)?;
    Ok(OutboundSms {
        to,
        kind: item.kind,
        body: SecretString::from(content.body.clone()),
        personalisation: content
            .personalisation
            .iter()
            .map(|(k, v)| (k.clone(), SecretString::from(v.clone())))
            .collect(),
        reference: item.id.to_string(),
    })
}

/// Prepare a text for the outbox: a fresh id (also the provider reference)
/// and the sealed content.
pub fn queue(
    key: &OutboxKey,
    mut sms: OutboundSms,
    account: &Email,
    masked_sender: String,
) -> Result<NewOutboxItem, OutboxError> {
    let id = uuid::Uuid::new_v4();
    sms.reference = id.to_string();
    Ok(NewOutboxItem {
        id,
        kind: sms.kind,
        to: sms.to.as_e164().to_owned(),
        account: account.as_str().to_owned(),
        masked_sender,
        sealed: seal(key, id, &sms)?,
    })
}

/// How long the reply to an inbound message is kept for answering repeated
/// deliveries (providers retry within hours), and how long a Telegram
/// `update_id` is remembered.
const PROCESSED_REPLIES_KEPT: Duration = Duration::days(2);

/// How the worker retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before the second attempt; doubles each time.
    pub base: Duration,
    pub max_delay: Duration,
    /// Attempts before a transient failure becomes final.
    pub max_attempts: u32,
    /// How long a claimed text is reserved for its worker.
    pub lease: Duration,
    /// How often idle workers look for due texts (texts queued by this
    /// instance wake its worker at once).
    pub poll: StdDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::seconds(2),
            max_delay: Duration::minutes(5),
            max_attempts: 8,
            lease: Duration::seconds(60),
            poll: StdDuration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempts: u32) -> Duration {
        let factor = 2_i32.saturating_pow(attempts.saturating_sub(1).min(20));
        (self.base * factor).min(self.max_delay)
    }
}

/// Delivers queued texts. Every instance runs one; claims are exclusive.
pub struct OutboxWorker {
    pub store: Arc<dyn Store>,
    pub sender: Arc<dyn SmsSender>,
    pub directory: Arc<dyn Directory>,
    pub key: OutboxKey,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    /// Rung when a turn queues a text.
    pub wake: Arc<Notify>,
    /// Deliver only this conversation's texts (the terminal chat).
    pub only_conversation: Option<crate::domain::ConversationKey>,
    /// How long inbound SMS ids are remembered (`INBOUND_ID_RETENTION_DAYS`).
    pub sms_ids_kept: Duration,
    /// What the maintenance sweep deletes, and how often it runs.
    pub retention: Retention,
}

impl OutboxWorker {
    /// Run until `stop` changes; a text being sent is finished first.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        self.run_borrowed(stop).await
    }

    /// [`run`](Self::run), keeping the worker for its caller.
    pub async fn run_borrowed(&self, mut stop: watch::Receiver<bool>) {
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            // Housekeeping, at start-up and then every few minutes.
            if last_sweep.is_none_or(|t| t.elapsed() >= self.retention.sweep_every) {
                last_sweep = Some(std::time::Instant::now());
                self.sweep().await;
            }
            match self.deliver_next().await {
                // One sent (or settled): look for the next at once.
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "outbox: cannot claim texts"),
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.policy.poll) => {}
            }
        }
    }

    /// Delete what is kept no longer (see [`Retention`]) and forget old
    /// inbound message ids.
    pub async fn sweep(&self) {
        let now = self.clock.now();
        match self.store.sweep(self.retention.cutoffs(now)).await {
            Ok(swept) if swept.total() > 0 => tracing::info!(
                conversations = swept.conversations,
                outbox = swept.outbox,
                verification_failures = swept.verification_failures,
                account_blocks = swept.account_blocks,
                audit_log = swept.audit_log,
                "retention sweep deleted expired rows"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will try again"),
        }
        let prune = ProcessedPrune {
            replies_before: now - PROCESSED_REPLIES_KEPT,
            sms_ids_before: now - self.sms_ids_kept,
            other_ids_before: now - PROCESSED_REPLIES_KEPT,
        };
        match self.store.prune_processed(&prune).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "old inbound message ids forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune old inbound message ids"),
        }
    }

    /// Claim one due text and deliver it; false when nothing is due.
    ///
    /// Texts are claimed one at a time, each just before it is sent, so that
    /// a claim's lease covers only its own send: were a batch claimed at
    /// once, the leases of its last texts could run out while the first ones
    /// are still being sent (a slow provider), and another instance would
    /// claim and send them too. Between two texts the worker checks whether
    /// it is being stopped.
    pub async fn deliver_next(&self) -> Result<bool, crate::store::StoreError> {
        let Some(item) = self
            .store
            .claim_outbox(
                self.clock.now(),
                self.policy.lease,
                1,
                self.only_conversation.as_ref(),
            )
            .await?
            .pop()
        else {
            return Ok(false);
        };
        if let Err(e) = self.deliver(&item).await {
            tracing::error!(error = %e, id = %item.id, "outbox: could not record a delivery outcome");
        }
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(id = %item.id, kind = item.kind.as_str(), to = %mask_phone_number(&item.to), attempt = item.attempts))]
    async fn deliver(&self, item: &OutboxItem) -> Result<(), crate::store::StoreError> {
        let sms = match unseal(&self.key, item) {
            Ok(sms) => sms,
            Err(e) => return self.give_up(item, &e.to_string()).await,
        };
        if item.uncertain {
            // An earlier attempt may have reached the provider before its
            // instance died: ask before sending again.
            let candidates = match self.sender.find_sent(&sms, item.created_at).await {
                Ok(candidates) => candidates,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell whether the text was sent; will ask again");
                    let next = self.clock.now() + self.policy.delay(item.attempts);
                    return self
                        .store
                        .outbox_retry(item.id, item.attempts, next, &e.to_string())
                        .await;
                }
            };
            // The same words may have gone to the same number before (a
            // notice): only a text not already recorded for another row is
            // this one.
            let recorded = self.store.provider_ids_recorded(&candidates).await?;
            if let Some(provider_id) = candidates.iter().find(|c| !recorded.contains(c)) {
                tracing::info!("text had already been sent; recording it");
                return self
                    .store
                    .outbox_delivered(item.id, provider_id, self.clock.now())
                    .await;
            }
        }
        match self.sender.send(&sms).await {
            Ok(provider_id) => {
                tracing::info!("text delivered to the provider");
                self.store
                    .outbox_delivered(item.id, &provider_id, self.clock.now())
                    .await
            }
            Err(SendError::Permanent(reason)) => self.give_up(item, &reason).await,
            Err(SendError::Transient {
                reason,
                retry_after,
            }) => {
                if item.attempts >= self.policy.max_attempts {
                    return self.give_up(item, &reason).await;
                }
                let delay = retry_after
                    .and_then(|d| Duration::from_std(d).ok())
                    .unwrap_or_else(|| self.policy.delay(item.attempts))
                    .max(self.policy.delay(item.attempts));
                tracing::warn!(%reason, retry_in_secs = delay.num_seconds(), "text not sent; will retry");
                self.store
                    .outbox_retry(item.id, item.attempts, self.clock.now() + delay, &reason)
                    .await
            }
        }
    }

    /// A final failure: erase the secret, audit it, and if it carried a
    /// temporary password, put back the password it replaced.
    async fn give_up(
        &self,
        item: &OutboxItem,
        reason: &str,
    ) -> Result<(), crate::store::StoreError> {
        tracing::error!(%reason, "text finally failed");
        let now = self.clock.now();
        let channel = item.conversation_key.split(':').next().unwrap_or_default();
        let audit = AuditEvent {
            at: now,
            channel: channel.to_owned(),
            sender: if item.masked_sender.is_empty() {
                // Queued before senders were hashed: the key is in clear.
                crate::domain::ConversationKey::parse(&item.conversation_key)
                    .map(|k| k.masked_sender())
                    .unwrap_or_default()
            } else {
                item.masked_sender.clone()
            },
            account: Some(item.account.clone()),
            event: "sms".to_owned(),
            outcome: format!("{}_failed", item.kind.as_str()),
        };
        if !self
            .store
            .outbox_failed(item.id, item.attempts, reason, audit)
            .await?
        {
            tracing::info!("another worker has taken the text over; leaving it to them");
            return Ok(());
        }
        if item.kind == SmsKind::TempPassword
            && let Ok(email) = Email::parse(&item.account)
        {
            match self
                .directory
                .revert_temporary_password(&email, item.created_at)
                .await
            {
                Ok(true) => tracing::info!("previous password restored"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not restore the previous password"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms() -> OutboundSms {
        OutboundSms {
            to: parse_uk_mobile("07811 123456", false).unwrap(),
            kind: SmsKind::TempPassword,
            body: SecretString::from("Your password is Abc123xyzDEF".to_owned()),
            personalisation: vec![(
                "password".to_owned(),
                SecretString::from("Abc123xyzDEF".to_owned()),
            )],
            reference: String::new(),
        }
    }

    fn item(new: &NewOutboxItem) -> OutboxItem {
        OutboxItem {
            id: new.id,
            kind: new.kind,
            to: new.to.clone(),
            account: new.account.clone(),
            conversation_key: "sms:0123".into(),
            masked_sender: new.masked_sender.clone(),
            sealed: new.sealed.clone(),
            attempts: 1,
            uncertain: false,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn sealed_text_round_trips_and_hides_the_secret() {
        let key = OutboxKey::generate();
        let email = Email::parse("a@nhs.net").unwrap();
        let new = queue(&key, sms(), &email, "+44*******456".into()).unwrap();
        assert!(!new.sealed.windows(12).any(|w| w == b"Abc123xyzDEF"));
        let opened = unseal(&key, &item(&new)).unwrap();
        assert_eq!(opened.body(), "Your password is Abc123xyzDEF");
        assert_eq!(opened.reference, new.id.to_string());
        assert_eq!(opened.personalisation[0].1.expose_secret(), "Abc123xyzDEF");
    }

    #[test]
    fn wrong_key_tampering_or_another_row_fail_to_open() {
        let key = OutboxKey::generate();
        let email = Email::parse("a@nhs.net").unwrap();
        let new = queue(&key, sms(), &email, "+44*******456".into()).unwrap();
        assert!(unseal(&OutboxKey::generate(), &item(&new)).is_err());
        let mut tampered = item(&new);
        let last = tampered.sealed.len() - 1;
        tampered.sealed[last] ^= 1;
        assert!(unseal(&key, &tampered).is_err());
        let mut moved = item(&new);
        moved.id = uuid::Uuid::new_v4();
        assert!(unseal(&key, &moved).is_err(), "bound to its row");
    }

    #[test]
    fn key_parsing() {
        let key = OutboxKey::generate();
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(OutboxKey::from_hex(&hex).is_ok());
        assert!(OutboxKey::from_hex("abcd").is_err());
        assert!(OutboxKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{key:?}"), "OutboxKey(***)");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::seconds(2));
        assert_eq!(p.delay(2), Duration::seconds(4));
        assert_eq!(p.delay(3), Duration::seconds(8));
        assert_eq!(p.delay(30), Duration::minutes(5));
    }
}
