-- ANSWER_MODE=characters: each answer also sealed under ANSWERS_KEY
-- (nonce + XChaCha20-Poly1305 ciphertext of the normalised answer, padded,
-- bound to directory_id, position and normalisation), so that characters
-- can be checked by position. NULL when enrolled without ANSWERS_KEY.
ALTER TABLE enrolments ADD COLUMN answer_sealed BYTEA;
