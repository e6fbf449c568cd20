-- The appliance's users: one row per SIP account of the inventory (speaqr_users role).
-- The SIP password is not stored here; it lives only in the PJSIP configuration.
CREATE TABLE IF NOT EXISTS users (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT,
  username VARCHAR(64) NOT NULL,
  email VARCHAR(254) NOT NULL,
  source_language VARCHAR(16) NOT NULL,
  target_language VARCHAR(16) NOT NULL,
  voice ENUM('M', 'F', 'N') NOT NULL DEFAULT 'N',
  enabled TINYINT(1) NOT NULL DEFAULT 1,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY users_username_uq (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
