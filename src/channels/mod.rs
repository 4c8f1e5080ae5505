//! Channels turn an inbound message into (conversation key, message id,
//! text), hand it to the engine, and render the reply. No policy here.

pub mod sms_twilio;
pub mod telegram;
pub mod terminal;
