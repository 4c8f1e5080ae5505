-- Which normalisation each stored answer was hashed with (see
-- AnswerNormalisation in src/domain/secret.rs). Answers stored before this
-- column existed were made with the first one.
ALTER TABLE security_questions ADD COLUMN answer_normalisation INTEGER NOT NULL DEFAULT 1;
