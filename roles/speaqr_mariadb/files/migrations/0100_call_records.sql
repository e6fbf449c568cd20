-- Migration 0100: the call_records table, copied from agi/sql/call_records.sql (the
-- application's schema; keep the two in step by adding migrations, never by editing this one).
-- Numbered 0100 so that it never clashes with the users table's own migrations (0001...).
-- The role splits statements on ";" after dropping whole-line comments: inline comments hold none.
--
-- speaqr-sip call records: one row per call attempt (loopback and call services).
-- MariaDB 11.8, InnoDB, utf8mb4. Written by the ARI application (user of [database] in
-- ari.toml) and, for calls the AGI check refuses before Stasis, by the AGI check (user of
-- [database] in agi.toml) when [call_records] enabled = true in that file.
-- Grants: INSERT on this table for both users (the writers never read, update or delete).
-- Times are UTC with millisecond precision.

CREATE TABLE IF NOT EXISTS call_records (
  id              BIGINT UNSIGNED  NOT NULL AUTO_INCREMENT,
  -- Unique per attempt (uuid4 hex from the writer): makes a retried INSERT idempotent.
  attempt_id      CHAR(32)         CHARACTER SET ascii NOT NULL,
  -- Asterisk channel uniqueid of the caller leg (correlates with Asterisk's logs).
  channel_id      VARCHAR(64)      CHARACTER SET ascii NOT NULL DEFAULT '',
  -- SIP Call-ID of the caller's INVITE (channel variable SPEAQR_CALL_ID); '' when unknown.
  call_id         VARCHAR(255)     NOT NULL DEFAULT '',
  username        VARCHAR(64)      NOT NULL DEFAULT '',
  service         VARCHAR(16)      NOT NULL,            -- loopback | call
  destination     VARCHAR(64)      NOT NULL DEFAULT '', -- X-Destination
  dialled_number  VARCHAR(32)      NOT NULL DEFAULT '', -- X-Dial, else X-Destination (call only)
  started_at      DATETIME(3)      NOT NULL,            -- caller reached the AGI check / Stasis
  answered_at     DATETIME(3)      NULL DEFAULT NULL,   -- caller answered (call: callee answered)
  ended_at        DATETIME(3)      NOT NULL,
  sip_status      SMALLINT UNSIGNED NOT NULL,           -- final status toward the caller (200 if answered)
  cause           VARCHAR(32)      NOT NULL,            -- normal, busy, no_answer, policy, ...
  processor       VARCHAR(16)      NULL DEFAULT NULL,   -- passthrough | speaqr, NULL if none started
  created_at      DATETIME(3)      NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY call_records_attempt (attempt_id),
  KEY call_records_user_started (username, started_at),
  KEY call_records_call_id (call_id(64))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
