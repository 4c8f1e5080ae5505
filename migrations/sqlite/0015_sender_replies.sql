-- The per-sender reply budget (SENDER_REPLIES_PER_DAY): replies given to
-- each sender (the conversation key, as its keyed hash) since the start of
-- its current day-long window. Swept a day after the window started.
CREATE TABLE sender_replies (
    conversation_key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    replies INTEGER NOT NULL
);
CREATE INDEX sender_replies_window_start ON sender_replies (window_start);
