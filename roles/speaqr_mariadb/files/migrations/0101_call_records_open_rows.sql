-- Migration 0101: call_records rows may be open while the call lasts.
-- The ARI application writes a call's row when the call is admitted (ended_at NULL,
-- sip_status NULL, cause 'in_progress'), again when it is answered, and finishes it when the
-- call ends; the next run closes rows a crashed run left open (cause 'app_restart').
-- call_records_open finds those rows without a scan at start-up.
-- The role splits statements on ";" after dropping whole-line comments: inline comments hold none.

ALTER TABLE call_records
  MODIFY ended_at DATETIME(3) NULL DEFAULT NULL,
  MODIFY sip_status SMALLINT UNSIGNED NULL DEFAULT NULL,
  ADD KEY call_records_open (ended_at);
