-- Per-user audio processor (speaqr_users `processor`): NULL = the ARI application's configured
-- processor; 'passthrough' or 'speaqr' override it for that user's calls. The AGI check reads it
-- and hands it to the ARI application (channel variable SPEAQR_PROCESSOR).
ALTER TABLE users
  ADD COLUMN IF NOT EXISTS processor ENUM('passthrough', 'speaqr') NULL DEFAULT NULL AFTER enabled;
