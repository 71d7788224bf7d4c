-- Spare databases carry their tenant login role (made with the spare, with its grants), so a new
-- clinic does no role work in its critical path. The role is chosen when the spare is made, not
-- derived from the clinic's final database name, so it is recorded with the spare and, when an
-- organization claims the spare, with the organization. NULL: a spare made without a role, and
-- every organization not made from such a spare (clinic-service derives its role from the
-- database name, as before).
ALTER TABLE spare_database ADD COLUMN login_role text
    CHECK (login_role ~ '^clinic_tenant_[0-9a-f]{32}$');
ALTER TABLE organization ADD COLUMN login_role text
    CHECK (login_role ~ '^clinic_tenant_[0-9a-f]{32}$');
