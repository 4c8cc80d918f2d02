-- Ingestion service: per-device credentials (hashed secrets), managed by `kidjamo devices`.
-- The device keeps its secret; the service stores only sha256(secret), which it compares with the
-- hash of an X-Api-Key and uses as the HMAC key of signed requests (see docs/ingestion.md).
CREATE TABLE kidjamo.device_credentials (
    device_id             text PRIMARY KEY REFERENCES kidjamo.devices (device_id),
    secret_hash           text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    -- After a rotation the previous secret stays valid for a grace period, so a device can switch over.
    previous_secret_hash  text CHECK (previous_secret_hash ~ '^[0-9a-f]{64}$'),
    previous_valid_until  timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    rotated_at            timestamptz,
    revoked_at            timestamptz
);
COMMENT ON TABLE kidjamo.device_credentials IS 'One row per device allowed to post readings; the secret is stored hashed only.';
COMMENT ON COLUMN kidjamo.device_credentials.secret_hash IS 'sha256 hex of the current device secret';
COMMENT ON COLUMN kidjamo.device_credentials.revoked_at IS 'set by kidjamo devices revoke: the device gets 401 from then on';
