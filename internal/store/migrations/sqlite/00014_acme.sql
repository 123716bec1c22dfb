-- +goose Up
-- ACME certificates (issue 13, control NET-3), shared by every node of the
-- platform through the store. Platform level: nothing of any tenant.
--
-- One row per named item:
--   'account:<directory URL>'    the ACME account key (secret_wrap);
--   'cert:<domains>'             the certificate chain (public, PEM) and its
--                                ECDSA P-256 key (secret_wrap), not_after set;
--   'lock:<domains>'             the renewal lease: lease_owner holds it
--                                until lease_until (Unix microseconds);
--   'alpn:<domain>'              a tls-alpn-01 challenge certificate, so
--   'http01:<token>'             that any node can answer the CA (and the
--                                key authorisation of an http-01 challenge).
-- secret_wrap is wrapped by the master key, bound to the row name.
CREATE TABLE acme_state (
    name        TEXT   PRIMARY KEY,
    public      BLOB  NOT NULL,
    secret_wrap BLOB  NOT NULL,
    not_after   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    lease_owner TEXT   NOT NULL,
    lease_until BIGINT NOT NULL
);

-- +goose Down
DROP TABLE acme_state;
