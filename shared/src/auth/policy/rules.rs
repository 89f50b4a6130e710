//! The rule names handlers enforce, so none is ever misspelt at a call site, and the rules
//! they default to: dcmanager's (dcmanager/api/policies), which an operator's policy file may
//! override.

pub const ADMIN_OR_CONFIGURATOR: &str = "admin_or_configurator";
pub const ADMIN_OR_OPERATOR_OR_CONFIGURATOR: &str = "admin_or_operator_or_configurator";
pub const READER_OR_OPERATOR_OR_CONFIGURATOR: &str = "reader_or_operator_or_configurator";

pub const SUBCLOUD_BACKUP_CREATE: &str = "dc_api:subcloud_backup:create";
pub const SUBCLOUD_BACKUP_DELETE: &str = "dc_api:subcloud_backup:delete";
pub const SUBCLOUD_BACKUP_RESTORE: &str = "dc_api:subcloud_backup:restore";
/// Operation records and backup lists (dcbackup's own, not dcmanager's).
pub const SUBCLOUD_BACKUP_GET: &str = "dc_api:subcloud_backup:get";

pub const SUBCLOUDS_GET: &str = "dc_api:subclouds:get";
pub const SUBCLOUDS_CREATE: &str = "dc_api:subclouds:create";
pub const SUBCLOUDS_MODIFY: &str = "dc_api:subclouds:modify";
pub const SUBCLOUDS_DELETE: &str = "dc_api:subclouds:delete";
pub const SUBCLOUDS_MANAGE_UNMANAGE: &str = "dc_api:subclouds:manage_unmanage";

pub const SUBCLOUD_GROUPS_GET: &str = "dc_api:subcloud_groups:get";
pub const SUBCLOUD_GROUPS_CREATE: &str = "dc_api:subcloud_groups:create";
pub const SUBCLOUD_GROUPS_MODIFY: &str = "dc_api:subcloud_groups:modify";
pub const SUBCLOUD_GROUPS_DELETE: &str = "dc_api:subcloud_groups:delete";

/// Backup schedules (dcbackup's own, in dcmanager's style: reading them is a reader's
/// right, changing them an operator's, as starting backups is).
pub const BACKUP_SCHEDULES_GET: &str = "dc_api:backup_schedules:get";
pub const BACKUP_SCHEDULES_CREATE: &str = "dc_api:backup_schedules:create";
pub const BACKUP_SCHEDULES_MODIFY: &str = "dc_api:backup_schedules:modify";
pub const BACKUP_SCHEDULES_DELETE: &str = "dc_api:backup_schedules:delete";

/// dcmanager's defaults (dcmanager/api/policies), plus `subcloud_backup:get` for our reads
/// and the `backup_schedules` rules.
pub(super) const DEFAULT_RULES: [(&str, &str); 20] = [
    (
        ADMIN_OR_CONFIGURATOR,
        "(role:admin or role:configurator) and (project_name:admin or project_name:services)",
    ),
    (
        ADMIN_OR_OPERATOR_OR_CONFIGURATOR,
        "(role:admin or role:operator or role:configurator) and \
         (project_name:admin or project_name:services)",
    ),
    (
        READER_OR_OPERATOR_OR_CONFIGURATOR,
        "(role:reader or role:operator or role:configurator) and \
         (project_name:admin or project_name:services)",
    ),
    (
        SUBCLOUD_BACKUP_CREATE,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        SUBCLOUD_BACKUP_DELETE,
        "rule:admin_or_operator_or_configurator",
    ),
    (SUBCLOUD_BACKUP_RESTORE, "rule:admin_or_configurator"),
    (
        SUBCLOUD_BACKUP_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (SUBCLOUDS_GET, "rule:reader_or_operator_or_configurator"),
    (SUBCLOUDS_CREATE, "rule:admin_or_configurator"),
    (SUBCLOUDS_MODIFY, "rule:admin_or_configurator"),
    (SUBCLOUDS_DELETE, "rule:admin_or_configurator"),
    (
        SUBCLOUDS_MANAGE_UNMANAGE,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        SUBCLOUD_GROUPS_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (SUBCLOUD_GROUPS_CREATE, "rule:admin_or_configurator"),
    (SUBCLOUD_GROUPS_MODIFY, "rule:admin_or_configurator"),
    (SUBCLOUD_GROUPS_DELETE, "rule:admin_or_configurator"),
    (
        BACKUP_SCHEDULES_GET,
        "rule:reader_or_operator_or_configurator",
    ),
    (
        BACKUP_SCHEDULES_CREATE,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        BACKUP_SCHEDULES_MODIFY,
        "rule:admin_or_operator_or_configurator",
    ),
    (
        BACKUP_SCHEDULES_DELETE,
        "rule:admin_or_operator_or_configurator",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::tests::who;
    use crate::auth::policy::Policy;

    #[test]
    fn default_rules_for_every_principal() {
        const AC: &[&str] = &["admin", "configurator"];
        const AOC: &[&str] = &["admin", "operator", "configurator"];
        const ROC: &[&str] = &["admin", "member", "reader", "operator", "configurator"];
        let table: [(&str, &[&str]); 20] = [
            (ADMIN_OR_CONFIGURATOR, AC),
            (ADMIN_OR_OPERATOR_OR_CONFIGURATOR, AOC),
            (READER_OR_OPERATOR_OR_CONFIGURATOR, ROC),
            (SUBCLOUD_BACKUP_CREATE, AOC),
            (SUBCLOUD_BACKUP_DELETE, AOC),
            (SUBCLOUD_BACKUP_RESTORE, AC),
            (SUBCLOUD_BACKUP_GET, ROC),
            (SUBCLOUDS_GET, ROC),
            (SUBCLOUDS_CREATE, AC),
            (SUBCLOUDS_MODIFY, AC),
            (SUBCLOUDS_DELETE, AC),
            (SUBCLOUDS_MANAGE_UNMANAGE, AOC),
            (SUBCLOUD_GROUPS_GET, ROC),
            (SUBCLOUD_GROUPS_CREATE, AC),
            (SUBCLOUD_GROUPS_MODIFY, AC),
            (SUBCLOUD_GROUPS_DELETE, AC),
            (BACKUP_SCHEDULES_GET, ROC),
            (BACKUP_SCHEDULES_CREATE, AOC),
            (BACKUP_SCHEDULES_MODIFY, AOC),
            (BACKUP_SCHEDULES_DELETE, AOC),
        ];
        let policy = Policy::defaults();
        assert_eq!(policy.rules.len(), table.len(), "every default is tested");
        let roles = [
            "admin",
            "member",
            "operator",
            "configurator",
            "reader",
            "observer",
        ];
        for (rule, allowed) in table {
            for role in roles {
                for project in ["admin", "services", "other"] {
                    let expected = allowed.contains(&role) && project != "other";
                    assert_eq!(
                        policy.enforce(rule, &who(&[role], Some(project))).is_ok(),
                        expected,
                        "{rule}: {role} in {project}"
                    );
                }
                assert!(
                    policy.enforce(rule, &who(&[role], None)).is_err(),
                    "{rule}: {role} without a project"
                );
            }
        }
    }
}
