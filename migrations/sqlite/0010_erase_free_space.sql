-- no-transaction
-- Texts erased before secure_delete was turned on may have left sealed
-- copies in free space: rebuild the file once (with secure_delete on, as
-- every connection now sets it). The write-ahead log is truncated at start-up.
VACUUM;
