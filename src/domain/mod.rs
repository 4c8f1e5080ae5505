//! Domain value types for unlockbot.
//!
//! Everything in here is pure (no I/O, no clocks) apart from the random
//! number generator used for temporary passwords and password-hash salts.
//! The types are "parse, don't validate": a value of one of these types has
//! already passed its checks, so the rest of the crate can rely on it.
//!
//! * [`Email`]: a normalised, validated email address.
//! * [`UkMobile`] / [`RegisteredMobile`]: phone numbers as registered against
//!   an account, parsed from whatever a spreadsheet produced.
//! * [`Last4`]: the last four digits of a mobile, compared in constant time.
//! * [`TempPassword`], [`Answer`] and the hashing helpers: secrets.
//! * [`characters`]: answers asked for by characters, sealed under `ANSWERS_KEY`.
//! * [`sealing`]: the one authenticated encryption (outbox texts, answers).
//! * [`ConversationKey`]: who we are talking to, on which channel.
//! * [`text`]: characters that must never reach a reply or an operator.

pub mod characters;
pub mod conversation_key;
pub mod email;
pub mod last4;
pub mod mobile;
pub mod sealing;
pub mod secret;
pub mod sender_key;
pub mod text;

pub use characters::{
    AnswerCharacters, AnswerSlot, AnswersKey, Characters, CharactersError, ResealError,
    SealedAnswer,
};
pub use conversation_key::{Channel, ConversationKey, KeyError};
pub use email::{Email, EmailError};
pub use last4::{Last4, Last4Error};
pub use mobile::{
    PhoneError, RegisteredMobile, SenderCountries, UkMobile, mask_phone_number,
    normalise_spreadsheet_number, parse_any_e164, parse_registered_mobile, parse_uk_mobile,
};
pub use secret::{
    Answer, AnswerHash, AnswerNormalisation, HashError, HashMemory, PolicyError, TempPassword,
    hash_answer, hash_answer_with, hash_password, hash_password_with, meets_ad_complexity,
    meets_password_policy, verify_answer, verify_answer_with, verify_password,
    verify_password_with,
};
pub use sender_key::{BadSenderKey, SenderKey};
