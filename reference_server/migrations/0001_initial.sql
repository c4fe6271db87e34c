-- Tenants, workflow/task executions and hashed API tokens (the `sql` provisioner of
-- harness/provisioning.py writes these tables too).
CREATE TABLE tenant (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflow_execution (
    id                            uuid PRIMARY KEY,
    tenant_id                     uuid NOT NULL REFERENCES tenant(id),
    parent_workflow_execution_id  uuid REFERENCES workflow_execution(id),
    kind                          text NOT NULL,
    status                        text NOT NULL DEFAULT 'RUNNING',
    created_at                    timestamptz NOT NULL DEFAULT now(),
    completed_at                  timestamptz
);
CREATE INDEX workflow_execution_parent_idx ON workflow_execution (parent_workflow_execution_id);

CREATE TABLE task_execution (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenant(id),
    workflow_execution_id  uuid REFERENCES workflow_execution(id),
    kind                   text NOT NULL,
    status                 text NOT NULL DEFAULT 'RUNNING',
    created_at             timestamptz NOT NULL DEFAULT now(),
    completed_at           timestamptz
);
CREATE INDEX task_execution_workflow_idx ON task_execution (workflow_execution_id);

-- token_hash = SHA-256 of the whole token string (prefix included); the token itself is never stored.
CREATE TABLE api_token (
    id                           uuid PRIMARY KEY,
    tenant_id                    uuid NOT NULL REFERENCES tenant(id),
    kind                         text NOT NULL CHECK (kind IN ('user', 'worker', 'stream')),
    token_hash                   bytea NOT NULL UNIQUE,
    scope_workflow_execution_id  uuid,
    scope_task_execution_id      uuid,
    expires_at                   timestamptz,
    revoked_at                   timestamptz,
    created_at                   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_token_revoked_idx ON api_token (revoked_at) WHERE revoked_at IS NOT NULL;
