-- Outputs as an administrator defines them. Parameters keep Centreon's
-- lua_parameter shape: a name, a type and a value kept as text.
CREATE TABLE outputs (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL,
    -- The script of a `lua` output; NULL for native kinds.
    path       TEXT,
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- JSON array of Centreon filter names; [] accepts everything.
    filters    TEXT    NOT NULL DEFAULT '[]',
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE TABLE output_parameters (
    output_id INTEGER NOT NULL REFERENCES outputs (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    type      TEXT    NOT NULL CHECK (type IN ('string', 'number', 'password')),
    value     TEXT    NOT NULL,
    PRIMARY KEY (output_id, name)
);
