-- Stream tokens remember the user token that minted them: revoking it revokes them too.
ALTER TABLE api_token ADD COLUMN issued_by uuid REFERENCES api_token(id);
CREATE INDEX api_token_issued_by_idx ON api_token (issued_by) WHERE issued_by IS NOT NULL;
