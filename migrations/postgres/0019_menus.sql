-- Canonical menus per venue, kept as the exact JSON document `GET /menus/{venue}` serves
-- (so a read never rebuilds it), with its strong ETag and a version bumped on every change;
-- and each venue's store status (open, busy with extra prep minutes, closed).
CREATE TABLE menus (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    venue         TEXT NOT NULL,
    version       BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    document      TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, venue)
);

CREATE TABLE store_statuses (
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    venue               TEXT NOT NULL,
    status              TEXT NOT NULL,
    extra_prep_minutes  BIGINT,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, venue)
);
