-- Ingestion service: per-device credentials (hashed secrets), managed by `kidjamo devices`.
CREATE TABLE kidjamo.device_credentials (
    device_id    text PRIMARY KEY REFERENCES kidjamo.devices (device_id),
    secret_hash  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz,
    revoked_at   timestamptz
);
COMMENT ON TABLE kidjamo.device_credentials IS 'One row per device allowed to post readings; the secret is stored hashed only.';
