-- What a token may do: `read` (the JSON API, the tokens made before scopes) or `alerts` (post
-- Alertmanager notifications at /alerts/alertmanager).
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'read';
