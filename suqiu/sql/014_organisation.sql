-- A deployment's own organisation (suqiu org load). The tables jurisdictions, departments and
-- categories hold it as it is now; org_versions and org_changes record every change as a
-- versioned event (who loaded it, when), from which any past date is answered (as_of).
ALTER TABLE jurisdictions ADD COLUMN IF NOT EXISTS dispatcher text;
ALTER TABLE departments ADD COLUMN IF NOT EXISTS merged_into text;
ALTER TABLE departments ADD COLUMN IF NOT EXISTS dissolved boolean NOT NULL DEFAULT false;
ALTER TABLE departments ADD COLUMN IF NOT EXISTS successor text;

CREATE TABLE IF NOT EXISTS categories (
    code    text PRIMARY KEY,
    name    text    NOT NULL,
    retired boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS org_versions (
    version   integer PRIMARY KEY,
    loaded_at timestamptz NOT NULL,
    loaded_by text        NOT NULL,
    source    text        NOT NULL,  -- the file name, or what made the version
    document  text        NOT NULL   -- the file as loaded
);

CREATE TABLE IF NOT EXISTS org_changes (
    version integer NOT NULL REFERENCES org_versions (version),
    seq     integer NOT NULL,
    kind    text    NOT NULL,
    code    text    NOT NULL,
    detail  jsonb   NOT NULL,
    PRIMARY KEY (version, seq)
);

-- Categories were fixed in code before; a database from then (one with an organisation) keeps them.
INSERT INTO categories (code, name)
SELECT code, name FROM (VALUES
    ('approval', '行政审批'), ('policy', '政策咨询与兑现'), ('finance', '融资信贷'), ('labor', '用工与社保'),
    ('land_planning', '规划与用地'), ('environment', '生态环境'), ('infrastructure', '基础设施与配套'),
    ('tax', '税费'), ('legal_ip', '法律与知识产权'), ('market', '市场监管'), ('other', '其他')) AS fixed (code, name)
 WHERE EXISTS (SELECT 1 FROM jurisdictions)
ON CONFLICT DO NOTHING;

-- The organisation a database already holds becomes version 1, so every later change has a
-- version to be compared with.
INSERT INTO org_versions (version, loaded_at, loaded_by, source, document)
SELECT 1, now(), 'migration', 'the organisation before versions were kept', ''
 WHERE NOT EXISTS (SELECT 1 FROM org_versions) AND EXISTS (SELECT 1 FROM jurisdictions);
INSERT INTO org_changes (version, seq, kind, code, detail)
SELECT 1, row_number() OVER (ORDER BY ord, code), kind, code, detail FROM (
    SELECT 0 AS ord, 'jurisdiction_added' AS kind, code,
           jsonb_build_object('name', name, 'level', level, 'parent', parent) AS detail FROM jurisdictions
    UNION ALL
    SELECT 1, 'department_added', code, jsonb_build_object('name', name, 'jurisdiction', jurisdiction) FROM departments
    UNION ALL
    SELECT 2, 'category_added', code, jsonb_build_object('name', name) FROM categories
) AS baseline
 WHERE EXISTS (SELECT 1 FROM org_versions WHERE version = 1 AND loaded_by = 'migration')
   AND NOT EXISTS (SELECT 1 FROM org_changes WHERE version = 1);
