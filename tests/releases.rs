//! Releases (issue 14) on a real stack (Docker, Caddy, PostgreSQL in containers, the demo images
//! built from this checkout): a deploy whose release phase backs up (sha256 checked here) and
//! migrates in the new image under load, a failing migration that leaves production alone and
//! names its backup, `rollback --to` a tag no environment runs and one whose image is gone, and
//! a rollback across a schema change refused until `--keep-schema` or `--restore-db` decides
//! it, with `cutover releases` and the journal telling what happened.

use std::{sync::OnceLock, time::Duration};

use sha2::{Digest, Sha256};

use crate::support::{
    self, Service,
    stack::{self, Stack},
};

/// The demo image as this checkout builds it (with its migration tool), under a name of its own.
const REPO: &str = "cutover-releases-demo";

fn require() -> bool {
    [Service::Docker, Service::Caddy, Service::Postgres]
        .into_iter()
        .all(support::require)
}

/// A stack on [`REPO`]'s images whose release phase is the demo's migration tool, with
/// `settings` besides.
fn stack(prefix: &str, settings: &[(&str, &str)]) -> Stack {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| stack::images_named(REPO, &["v1", "v2", "v3", "v1-gone"]));
    let mut all = vec![
        ("API_GATEWAY_IMAGE", REPO),
        ("AUTH_SERVICE_IMAGE", REPO),
        ("CHAT_ORCHESTRATOR_IMAGE", REPO),
        ("CONSCIOUSNESS_BACKEND_IMAGE", REPO),
        ("MIGRATE_COMMAND", "migrate"),
        ("MIGRATE_TIMEOUT", "60"),
    ];
    all.extend_from_slice(settings);
    Stack::with(prefix, &all)
}

/// The names of the files in the stack's backup directory, sorted.
fn backups(stack: &Stack) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(stack.path().join("deploy/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The journal's entries of `kind` that are records, oldest first.
fn records(stack: &Stack, kind: &str) -> Vec<serde_json::Value> {
    stack
        .journal()
        .into_iter()
        .filter(|e| e["kind"] == kind && e["event"] == "record")
        .collect()
}

fn image_id(stack: &Stack, image: &str) -> String {
    stack
        .docker(&["image", "inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_string()
}

fn sha256_of(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_deploy_migrates_after_a_verified_backup_and_a_failing_migration_moves_nothing() {
    if !require() {
        return;
    }
    let stack = stack("rel-migrate", &[]);
    stack.cutover(&["prepare", "blue", "v1-gone"]).success();
    stack.cutover(&["promote", "blue"]).success();
    assert_eq!(
        stack.psql("SELECT max(version) FROM schema_migrations"),
        "1"
    );

    // A deploy of v2 (no staging) under load: backup, migration in v2's image, switch.
    let load = stack.load(Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    let deployed = stack
        .cutover(&["deploy", "blue-only"])
        .env("GREEN_TAG", "v2")
        .stderr_contains("release phase of green (v2): first a backup of flappyjournal (schema 1)")
        .stderr_contains("| applying 2: add notes.author")
        .stderr_contains("release phase of green (v2) done: schema 1 -> 2")
        .success();
    let report = load.stop();
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        let seen = report.group(group);
        assert!(seen.requests > 100, "{}", report.describe());
        assert_eq!(seen.failures(), 0, "{}", report.describe());
    }
    assert_eq!(stack.version(), "v2", "{}", deployed.stderr);
    // Its migration container removed and its tests passed, it has no cleanup left to run.
    assert!(
        !deployed.stderr.contains("running cleanup"),
        "{}",
        deployed.stderr
    );
    assert_eq!(
        stack.psql("SELECT max(version) FROM schema_migrations"),
        "2"
    );
    assert_eq!(
        stack.psql("SELECT column_name FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'author'"),
        "author"
    );

    // The release phase's record: the backup (its sha256 as the file reads now) and the image.
    let phase = records(&stack, "release");
    let phase = phase.last().unwrap();
    assert_eq!(phase["fields"]["outcome"], "ok");
    assert_eq!(phase["fields"]["image"], format!("{REPO}:v2"));
    assert_eq!(phase["fields"]["schema_before"], "1");
    assert_eq!(phase["fields"]["schema"], "2");
    let backup = phase["fields"]["backup"]["path"].as_str().unwrap();
    assert!(
        backup.starts_with("deploy/backups/flappyjournal-before-green-v2-")
            && backup.ends_with(".dump"),
        "{backup}"
    );
    assert_eq!(
        sha256_of(&stack.path().join(backup)),
        phase["fields"]["backup"]["sha256"].as_str().unwrap()
    );
    // No migration container is left behind.
    let left = stack.docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.name),
        "--filter",
        "label=cutover.release",
    ]);
    assert_eq!(left.trim(), "");

    // The release record: where production went, each service's image id, schema, backup.
    let release = records(&stack, "traffic");
    let release = &release.last().unwrap()["fields"];
    assert_eq!(release["to"], "green");
    assert_eq!(release["tag"], "v2");
    assert_eq!(release["schema"], "2");
    assert_eq!(release["backup"]["path"], backup);
    assert_eq!(
        release["images"]["green-api-gateway"],
        image_id(&stack, &format!("{REPO}:v2"))
    );
    let status = stack.cutover(&["status"]).success();
    assert!(
        status
            .stdout
            .contains("schema version 2 (set by the release phase of green (v2) at "),
        "{}",
        status.stdout
    );

    // A failing migration: production stays on green v2, the error says what the migration
    // printed and names the backup taken before it.
    let before = stack.journal().len();
    let failed = stack
        .cutover(&["prepare", "blue", "v2"])
        .env("MIGRATE_COMMAND", "migrate --sql 'ALTER TABLE missing_table ADD COLUMN x int'")
        .stderr_contains("the release phase of blue (v2) failed: migrate --sql 'ALTER TABLE missing_table ADD COLUMN x int' exited 1, printing:")
        .stderr_contains("relation \"missing_table\" does not exist")
        .stderr_contains("Traffic was not moved. The database was backed up before the migration to deploy/backups/flappyjournal-before-blue-v2-")
        .status(1);
    assert_eq!(stack.version(), "v2", "{}", failed.stderr);
    assert_eq!(stack.active(), "green");
    assert!(
        stack.journal()[before..]
            .iter()
            .all(|e| e["kind"] != "traffic"),
        "a failed release phase moved production"
    );
    let failure = records(&stack, "release");
    let failure = &failure.last().unwrap()["fields"];
    assert_eq!(failure["outcome"], "failed");
    assert!(
        std::fs::metadata(
            stack
                .path()
                .join(failure["backup"]["path"].as_str().unwrap())
        )
        .is_ok()
    );

    // v1-gone's tag is moved to another build (v3's, as a rebuild would): the tag is here but
    // not the build the release ran. `releases` and `rollback --to` say so, and how to get it
    // back, changing nothing; the way back they name works.
    let tagged = format!("{REPO}:v1-gone");
    let ran = image_id(&stack, &tagged);
    let other = image_id(&stack, &format!("{REPO}:v3"));
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_string();
    stack.docker(&["tag", &format!("{REPO}:v3"), &tagged]);
    let releases = stack.cutover(&["releases"]).success();
    assert!(
        releases.stdout.lines().any(|l| l.contains(" v1-gone ")
            && l.ends_with(&format!(
                "rebuilt: {tagged} is {} now, not the release's {} (still here)",
                short(&other),
                short(&ran)
            ))),
        "{}",
        releases.stdout
    );
    let before = stack.journal().len();
    stack
        .cutover(&["rollback", "--to", "v1-gone", "--yes"])
        .stderr_contains(&format!(
            "v1-gone cannot be brought back: {tagged} names another build now: \
             blue-api-gateway, blue-auth-service, blue-chat-orchestrator, \
             blue-consciousness-backend ran {ran}, the tag names {now} (rebuilt or moved since); \
             the build it ran is still here: 'docker tag {ran} {tagged}' gives the tag back to it",
            ran = short(&ran),
            now = short(&other),
        ))
        .stderr_contains("Nothing was changed.")
        .status(1);
    assert!(
        stack.journal()[before..]
            .iter()
            .all(|e| e["event"] != "change"),
        "the refused rollback changed something"
    );
    assert_eq!(stack.version(), "v2");
    stack.docker(&["tag", &short(&ran), &tagged]);
    let releases = stack.cutover(&["releases"]).success();
    assert!(
        releases
            .stdout
            .lines()
            .any(|l| l.contains(" v1-gone ") && l.ends_with("can come back")),
        "{}",
        releases.stdout
    );

    // v1-gone's image leaves this host: it can no longer be brought back, and says so.
    stack.docker(&["rmi", "-f", &format!("{REPO}:v1-gone")]);
    let releases = stack.cutover(&["releases"]).success();
    assert!(
        releases.stdout.lines().any(|l| l.contains(" v1-gone ")
            && l.ends_with(&format!("gone: {REPO}:v1-gone not on this host"))),
        "{}",
        releases.stdout
    );
    let refused = stack
        .cutover(&["rollback", "--to", "v1-gone", "--yes"])
        .stderr_contains(&format!(
            "v1-gone cannot be brought back: {REPO}:v1-gone not on this host any more"
        ))
        .status(1);
    assert!(
        refused.stderr.contains("Nothing was changed."),
        "{}",
        refused.stderr
    );
    stack
        .cutover(&["rollback", "--to", "v7", "--yes"])
        .stderr_contains("no release of v7 is recorded, so it cannot be brought back")
        .status(1);
    assert_eq!(stack.version(), "v2");
}

/// A deploy through staging runs two release phases on the one database the environments
/// share: staging's backs up and migrates; the standby's finds the schema as staging left it
/// and takes no second dump (it would be at the new schema, and count against BACKUP_KEEP):
/// its record names staging's backup, the one a rollback across the migration restores.
#[test]
fn a_deploy_through_staging_backs_up_the_database_once() {
    if !require() {
        return;
    }
    let stack = stack("rel-staged", &[]);
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
    let before = backups(&stack);
    let deployed = stack
        .cutover(&["deploy"])
        .env("STAGING_TAG", "v2")
        .stderr_contains("release phase of staging (v2): first a backup of flappyjournal (schema 1)")
        .stderr_contains("release phase of staging (v2) done: schema 1 -> 2")
        .stderr_contains("release phase of green (v2): flappyjournal is at schema 2, as staging's release phase of v2 left it: its backup from before that migration, deploy/backups/flappyjournal-before-staging-v2-")
        .stderr_contains("release phase of green (v2) done: schema 2 -> 2")
        .success();
    assert_eq!(stack.version(), "v2", "{}", deployed.stderr);
    let taken: Vec<String> = backups(&stack)
        .into_iter()
        .filter(|b| !before.contains(b))
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(
        taken[0].starts_with("flappyjournal-before-staging-v2-"),
        "{taken:?}"
    );
    let phases = records(&stack, "release");
    let green = phases.last().unwrap();
    assert_eq!(green["fields"]["env"], "green");
    assert_eq!(green["fields"]["schema_before"], "2");
    assert_eq!(
        green["fields"]["backup"]["path"],
        format!("deploy/backups/{}", taken[0])
    );
    assert_eq!(green["fields"]["backup"]["schema"], "1");
    // Back to v1 across the migration: the backup offered is staging's, from before it.
    stack
        .cutover(&["--dry-run", "rollback", "--restore-db"])
        .stdout_contains(&format!(
            "schema: v1 was released at 1, the database is at 2: restore-db: restore deploy/backups/{}",
            taken[0]
        ))
        .success();
}

#[test]
fn a_rollback_across_a_schema_change_is_a_decision_and_releases_tell_the_story() {
    if !require() {
        return;
    }
    // BACKUP_KEEP=1: the release phases' backups are pruned to the newest, but never one a
    // `rollback --restore-db` to a release still here needs.
    let stack = stack("rel-schema", &[("BACKUP_KEEP", "1")]);
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
    stack.psql("INSERT INTO notes (body) VALUES ('written by v1')");
    stack.cutover(&["prepare", "green", "v2"]).success();
    stack.cutover(&["promote", "green"]).success();

    // Back to v1 (schema 1) from schema 2: refused, naming both versions and the ways out,
    // FORCE_ROLLBACK or not.
    for forced in ["false", "true"] {
        stack
            .cutover(&["rollback", "--yes"])
            .env("FORCE_ROLLBACK", forced)
            .stderr_contains("refusing to roll back to v1: it was released at schema version 1, and the database is at 2 now")
            .stderr_contains("--keep-schema (v1 is known to work with schema 2: expand/contract)")
            .stderr_contains("--restore-db (restore deploy/backups/flappyjournal-before-green-v2-")
            .stderr_contains("FORCE_ROLLBACK does not decide this")
            .status(1);
        assert_eq!(stack.version(), "v2");
    }
    // A dry run prints the plan and changes nothing.
    let journal = stack.journal().len();
    stack
        .cutover(&["--dry-run", "rollback", "--restore-db"])
        .stdout_contains("plan: production green (v2) -> blue (v1)")
        .stdout_contains("migration: none (a rollback runs no release phase)")
        .stdout_contains("schema: v1 was released at 1, the database is at 2: restore-db: restore deploy/backups/flappyjournal-before-green-v2-")
        .stdout_contains("would roll back: production green -> blue (v1); nothing was changed (dry run)")
        .stdout_lacks("rolled back:")
        .success();
    assert_eq!(stack.journal().len(), journal);
    assert_eq!(stack.version(), "v2");

    // --keep-schema: v1 runs on schema 2 (it works with or without notes.author), under load.
    let load = stack.load(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    stack
        .cutover(&["rollback", "--keep-schema", "--yes"])
        .stdout_contains("rolled back: production green -> blue (v1)")
        .success();
    let report = load.stop();
    assert_eq!(
        report.groups.iter().map(|g| g.failures()).sum::<u64>(),
        0,
        "{}",
        report.describe()
    );
    assert_eq!(
        stack.psql("SELECT max(version) FROM schema_migrations"),
        "2"
    );

    // v3 renames a column (incompatible with v1 and v2); a row is written after its backup.
    stack.cutover(&["prepare", "green", "v3"]).success();
    // Three release phases so far (blue v1, green v2, green v3): v1's backup (taken before any
    // schema) is gone, v2's (schema 1, which blue v1's first release ran at) and v3's (schema
    // 2, v2's and the keep-schema v1's) stay; the deletion is journaled.
    let kept = backups(&stack);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept[0].starts_with("flappyjournal-before-green-v2-")
            && kept[1].starts_with("flappyjournal-before-green-v3-"),
        "{kept:?}"
    );
    assert!(
        stack.journal().iter().any(|e| e["event"] == "change"
            && e["message"].as_str().is_some_and(
                |m| m.starts_with("file::remove deploy/backups/flappyjournal-before-blue-v1-")
            )),
        "the pruned backup is not in the journal"
    );
    stack.cutover(&["promote", "green"]).success();
    stack.psql("INSERT INTO notes (content) VALUES ('written by v3')");
    assert_eq!(stack.psql("SELECT count(*) FROM notes"), "2");

    // --to v2, which no environment runs (blue runs v1): refused across schema 3 -> 2 first,
    // then with --restore-db: blue brought up on v2, the backup from before v3's release
    // restored (the row v3 wrote is gone, as announced), production switched.
    stack
        .cutover(&["rollback", "--to", "v2", "--yes"])
        .stderr_contains("refusing to roll back to v2: it was released at schema version 2, and the database is at 3 now")
        .status(1);
    let restored = stack
        .cutover(&["rollback", "--to", "v2", "--restore-db", "--yes"])
        .stderr_contains("bringing blue up on v2 (it runs v1), without its migration")
        .stderr_contains("ago at schema 2? Every write to the database since then is lost.")
        .stdout_contains("rolled back: production green -> blue (v2)")
        .success();
    assert_eq!(stack.version(), "v2", "{}", restored.stderr);
    assert_eq!(
        stack.psql("SELECT max(version) FROM schema_migrations"),
        "2"
    );
    assert_eq!(
        stack.psql("SELECT string_agg(body, ',') FROM notes"),
        "written by v1"
    );

    // The journal tells the story: the decision, the restore, the release it made.
    let decisions: Vec<String> = records(&stack, "rollback")
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        decisions[0].starts_with("schema decision for the rollback to v1: keep-schema"),
        "{decisions:#?}"
    );
    assert!(
        decisions[1].starts_with("schema decision for the rollback to v2: restore-db"),
        "{decisions:#?}"
    );
    assert!(
        stack.journal().iter().any(|e| e["event"] == "change"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("pg::restore"))
            && e["outcome"] == "ok"),
        "no restore in the journal"
    );
    let last = records(&stack, "traffic");
    let last = &last.last().unwrap()["fields"];
    assert_eq!(last["schema_decision"], "restore-db");
    assert_eq!(last["schema"], "2");
    assert!(
        last["restored"]["path"]
            .as_str()
            .unwrap()
            .contains("before-green-v3-")
    );

    // `cutover releases` matches what happened, newest first.
    let json = stack.cutover(&["releases", "--json"]).success();
    let releases: Vec<serde_json::Value> = serde_json::from_str(json.stdout.trim()).unwrap();
    let seen: Vec<(String, String, String, String, String)> = releases
        .iter()
        .map(|r| {
            (
                r["env"].as_str().unwrap().to_string(),
                r["tag"].as_str().unwrap().to_string(),
                r["how"].as_str().unwrap().to_string(),
                r["schema"].as_str().unwrap_or("-").to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("blue", "v2", "rollback", "2", "live"),
        ("green", "v3", "promote", "3", "standby"),
        ("blue", "v1", "rollback", "2", "can come back"),
        ("green", "v2", "promote", "2", "can come back"),
        ("blue", "v1", "promote", "1", "can come back"),
    ]
    .map(|(a, b, c, d, e)| (a.into(), b.into(), c.into(), d.into(), e.into()));
    assert_eq!(seen, expected);
}
