-- The gate's trust fixes (issue 12). Times are Unix ms. Same meaning on SQLite and PostgreSQL.

-- What each request links, as rows looked up by index: its pull requests ('pr', the number) and
-- the commits it covers ('sha': each linked PR's head, or the full SHA a request without PRs
-- names). Replaced in the transaction that saves the request. Never a LIKE over stored JSON:
-- check names, file names and branch names are anyone's to choose.
CREATE TABLE request_links (
    installation_id INTEGER NOT NULL,
    repository_id   INTEGER NOT NULL,
    issue           INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('pr', 'sha')),
    value           TEXT    NOT NULL,
    PRIMARY KEY (installation_id, repository_id, kind, value, issue)
);
CREATE INDEX request_links_request ON request_links (installation_id, repository_id, issue);

-- Existing requests: their links from the facts they stored.
INSERT OR IGNORE INTO request_links (installation_id, repository_id, issue, kind, value)
SELECT r.installation_id, r.repository_id, r.issue, 'pr', CAST(json_extract(p.value, '$.number') AS TEXT)
FROM requests r, json_each(r.facts, '$.prs') p WHERE json_valid(r.facts);
INSERT OR IGNORE INTO request_links (installation_id, repository_id, issue, kind, value)
SELECT r.installation_id, r.repository_id, r.issue, 'pr', CAST(p.value AS TEXT)
FROM requests r, json_each(r.facts, '$.missing_prs') p WHERE json_valid(r.facts);
INSERT OR IGNORE INTO request_links (installation_id, repository_id, issue, kind, value)
SELECT r.installation_id, r.repository_id, r.issue, 'sha', LOWER(json_extract(p.value, '$.head_sha'))
FROM requests r, json_each(r.facts, '$.prs') p WHERE json_valid(r.facts) AND json_extract(p.value, '$.head_sha') <> '';
INSERT OR IGNORE INTO request_links (installation_id, repository_id, issue, kind, value)
SELECT installation_id, repository_id, issue, 'sha', LOWER(json_extract(facts, '$.commit'))
FROM requests WHERE json_valid(facts) AND json_extract(facts, '$.commit') IS NOT NULL;

-- Holds and denials by account id (a login can be renamed).
ALTER TABLE requests ADD COLUMN hold_by_id INTEGER;
ALTER TABLE requests ADD COLUMN denied_by_id INTEGER;

-- Logins named in a policy, pinned to the account they belonged to when first resolved: a
-- rename and re-registration never hands a role to another account.
CREATE TABLE pinned_logins (
    installation_id INTEGER NOT NULL,
    login           TEXT    NOT NULL,       -- lowercase
    user_id         INTEGER NOT NULL,
    pinned_at       INTEGER NOT NULL,
    PRIMARY KEY (installation_id, login)
);

-- Who made a deployment: 'app' (the App created it), 'approved' (the App approved it through its
-- protection rule), 'actions' (a GitHub Actions workflow), 'manual' (anyone else's token). Only
-- the App's own count for a request; staging evidence also takes GitHub Actions'.
ALTER TABLE deployments ADD COLUMN origin TEXT NOT NULL DEFAULT 'manual';
-- Existing rows: the App's own only by the id GitHub gave them (never by a payload key, which
-- anyone can copy): created by the App (github_objects), or approved through its protection rule.
UPDATE deployments SET origin = 'app' WHERE EXISTS (
    SELECT 1 FROM github_objects o WHERE o.installation_id = deployments.installation_id
    AND o.kind = 'deployment' AND o.github_id = deployments.deployment_id);
UPDATE deployments SET origin = 'approved' WHERE origin = 'manual' AND EXISTS (
    SELECT 1 FROM protection_rules r WHERE r.installation_id = deployments.installation_id
    AND r.repository_id = deployments.repository_id AND r.deployment_id = deployments.deployment_id
    AND r.state = 'approved');
-- A deployment attached to a request by a payload key alone is not that request's.
UPDATE deployments SET issue = NULL WHERE origin = 'manual';

-- A deployment's status names it by GitHub's id: is it one the App created?
CREATE INDEX github_objects_by_id ON github_objects (installation_id, kind, github_id);

-- Who pushed to a pull request, from the `sender` of its `opened`, `synchronize` and `reopened`
-- events (commit authors come from git e-mail addresses, which anyone can set): like its author,
-- they cannot approve a request that links it.
CREATE TABLE pr_pushers (
    installation_id INTEGER NOT NULL,
    repository_id   INTEGER NOT NULL,
    pr              INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    PRIMARY KEY (installation_id, repository_id, pr, user_id)
);
