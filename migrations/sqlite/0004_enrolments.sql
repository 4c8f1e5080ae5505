-- Security questions are not in the directory: they are enrolled with the
-- bot, keyed by the directory's stable id for the account (the email in the
-- built-in directory, objectGUID on Active Directory, entryUUID on
-- OpenLDAP), so that a renamed account keeps them, and by its email.
CREATE TABLE enrolments (
    directory_id TEXT NOT NULL,
    email        TEXT NOT NULL,
    position     INTEGER NOT NULL,
    question     TEXT NOT NULL,
    answer_hash  TEXT NOT NULL,             -- argon2id of the normalised answer
    answer_normalisation INTEGER NOT NULL,  -- which normalisation it was made with
    enrolled_at  INTEGER NOT NULL,
    PRIMARY KEY (directory_id, position)
);
CREATE INDEX enrolments_by_email ON enrolments (email);

INSERT INTO enrolments (directory_id, email, position, question, answer_hash, answer_normalisation, enrolled_at)
SELECT q.account_email, q.account_email, q.position, q.question, q.answer_hash, q.answer_normalisation, a.updated_at
FROM security_questions q JOIN accounts a ON a.email = q.account_email;

DROP TABLE security_questions;
