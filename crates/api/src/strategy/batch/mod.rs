//! Rules of the `batch` resources: `pkg/apis/batch/v1/defaults.go`,
//! `pkg/registry/batch/{job,cronjob}/strategy.go`, `printJob`, `printCronJob`.

use serde_json::{Value, json};

use super::Strategy;
use super::core::podspec::{default_pod_spec, validate_template};
use super::util::{
    AGE, CONTAINERS, IMAGES, age, array_at, col, condition_true, container_cells,
    format_label_selector, immutable, int_at, int_col, keep_status, non_negative, path_mut,
    reset_status, since, str_at, supported,
};
use super::workload::{require_template, validate_selector};
use crate::object::{default_path, path, set_path};
use crate::table::{Column, TableContext, human_duration};
use crate::validation::FieldError;

/// Rules of `Job`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobStrategy;

/// Rules of `CronJob`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CronJobStrategy;

/// Labels upstream puts on the pods of jobs with generated selectors.
const JOB_NAME_LABELS: &[&str] = &["job-name", "batch.kubernetes.io/job-name"];
const CONTROLLER_UID_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

const JOB_SELECTOR_DOC: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const JOB_COLUMNS: &[Column] = &[
    col("Status", "Status of the job."),
    col("Completions", "The completion status of the job."),
    col("Duration", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", JOB_SELECTOR_DOC).wide(),
];

/// Defaults of a `JobSpec` at `at` that the pod template and job defaulting share.
fn default_job_template(obj: &mut Value, at: &str) {
    if let Some(spec) = path_mut(obj, &format!("{at}.template.spec")) {
        default_pod_spec(spec, false);
    }
}

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        if obj.get("spec").is_some_and(Value::is_object) {
            let unset = |obj: &Value, f: &str| path(obj, f).is_none_or(Value::is_null);
            if unset(obj, "spec.completions") && unset(obj, "spec.parallelism") {
                set_path(obj, "spec.completions", json!(1));
                set_path(obj, "spec.parallelism", json!(1));
            }
            default_path(obj, "spec.parallelism", json!(1));
            let per_index = !unset(obj, "spec.backoffLimitPerIndex");
            default_path(obj, "spec.backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
            default_path(obj, "spec.completionMode", json!("NonIndexed"));
            default_path(obj, "spec.suspend", json!(false));
            let policy =
                if unset(obj, "spec.podFailurePolicy") { "TerminatingOrFailed" } else { "Failed" };
            default_path(obj, "spec.podReplacementPolicy", json!(policy));
            super::util::each_mut(obj, "spec.podFailurePolicy.rules", |rule| {
                super::util::each_mut(rule, "onPodConditions", |c| {
                    super::util::default_field(c, "status", json!("True"));
                });
            });
            if let Some(labels) = path(obj, "spec.template.metadata.labels").cloned() {
                let meta = crate::object::metadata_mut(obj);
                if meta
                    .get("labels")
                    .and_then(Value::as_object)
                    .is_none_or(serde_json::Map::is_empty)
                {
                    meta.insert("labels".into(), labels);
                }
            }
        }
        default_job_template(obj, "spec");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
        let manual = path(obj, "spec.manualSelector").and_then(Value::as_bool) == Some(true);
        if manual || !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        // generateSelector: needs the uid, which the registry sets before this runs.
        let name = crate::object::name(obj).unwrap_or_default().to_string();
        let uid = crate::object::meta_str(obj, "uid").unwrap_or_default().to_string();
        if path(obj, "spec.template.metadata.labels").is_none_or(|l| !l.is_object()) {
            set_path(obj, "spec.template.metadata.labels", json!({}));
        }
        if let Some(labels) =
            path_mut(obj, "spec.template.metadata.labels").and_then(Value::as_object_mut)
        {
            for label in JOB_NAME_LABELS {
                labels.entry(*label).or_insert(json!(name));
            }
            for label in CONTROLLER_UID_LABELS {
                labels.entry(*label).or_insert(json!(uid));
            }
        }
        let selector = path_mut(obj, "spec.selector");
        let missing = selector.as_ref().is_none_or(|s| !s.is_object());
        if missing {
            set_path(obj, "spec.selector", json!({}));
        }
        if let Some(selector) = path_mut(obj, "spec.selector").and_then(Value::as_object_mut) {
            let labels = selector.entry("matchLabels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.entry(CONTROLLER_UID).or_insert(json!(uid));
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for field in ["spec.parallelism", "spec.completions", "spec.backoffLimit"] {
            non_negative(obj, field, &mut errors);
        }
        if let Some(n) = int_at(obj, "spec.activeDeadlineSeconds").filter(|n| *n <= 0) {
            errors.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                json!(n),
                "must be greater than or equal to 0",
            ));
        }
        supported(obj, "spec.completionMode", &["NonIndexed", "Indexed"], &mut errors);
        validate_selector(obj, "spec.template", "job", &mut errors);
        if require_template(obj, "spec.template", &mut errors) {
            validate_template(obj, "spec.template", &["OnFailure", "Never"], &mut errors);
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        immutable(new, old, "spec.selector", &mut errors);
        immutable(new, old, "spec.completionMode", &mut errors);
        // The template may change only while a job is suspended (for mutable scheduling
        // directives); otherwise it is immutable.
        let suspended = path(old, "spec.suspend").and_then(Value::as_bool) == Some(true);
        if !suspended {
            immutable(new, old, "spec.template", &mut errors);
        }
        let indexed = str_at(new, "spec.completionMode") == Some("Indexed");
        if !indexed {
            immutable(new, old, "spec.completions", &mut errors);
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("status.successful", int_at(obj, "status.succeeded").unwrap_or(0).to_string())]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["status.succeeded"])
    }

    fn columns(&self) -> &[Column] {
        JOB_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let succeeded = int_at(obj, "status.succeeded").unwrap_or(0);
        let completions = match int_at(obj, "spec.completions") {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int_at(obj, "spec.parallelism").unwrap_or(0) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let parse = |t: Option<&str>| t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let start = parse(str_at(obj, "status.startTime"));
        let end = parse(str_at(obj, "status.completionTime"));
        let duration = match (start, end) {
            (None, _) => String::new(),
            (Some(s), None) => {
                human_duration((ctx.now - s.with_timezone(&chrono::Utc)).num_seconds())
            }
            (Some(s), Some(e)) => human_duration((e - s).num_seconds()),
        };
        let status = if condition_true(obj, "Complete") {
            "Complete"
        } else if condition_true(obj, "Failed") {
            "Failed"
        } else if str_at(obj, "metadata.deletionTimestamp").is_some() {
            "Terminating"
        } else if condition_true(obj, "Suspended") {
            "Suspended"
        } else if condition_true(obj, "FailureTarget") {
            "FailureTarget"
        } else if condition_true(obj, "SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let (names, images) = container_cells(array_at(obj, "spec.template.spec.containers"));
        vec![
            json!(status),
            json!(completions),
            json!(duration),
            age(obj, ctx),
            names,
            images,
            json!(format_label_selector(path(obj, "spec.selector"))),
        ]
    }
}

const CRON_JOB_COLUMNS: &[Column] = &[
    col("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col(
        "Timezone",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
    ),
    Column::new(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
    ),
    int_col("Active", "A list of pointers to currently running jobs."),
    col("Last Schedule", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", JOB_SELECTOR_DOC).wide(),
];

/// `cron.ParseStandard`'s checks: five fields (or a descriptor), each in range.
fn cron_problem(schedule: &str) -> Option<String> {
    if schedule.contains("TZ") {
        return Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    let s = schedule.trim();
    if s.is_empty() {
        return Some("empty spec string".into());
    }
    if let Some(descriptor) = s.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => None,
            d if d.starts_with("every ") => None,
            _ => Some(format!("unrecognized descriptor: {s}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    const MONTHS: &[&str] =
        &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    for (i, field) in fields.iter().enumerate() {
        let (lo, hi) = ranges[i];
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |s| s == 0)
            {
                return Some(format!(
                    "failed to parse int from {step}: strconv.Atoi: parsing \"{step}\": invalid syntax"
                ));
            }
            if range == "*" || range == "?" {
                continue;
            }
            for bound in range.split('-') {
                let lower = bound.to_ascii_lowercase();
                let named = match i {
                    3 => MONTHS.iter().position(|m| *m == lower).map(|p| p as u32 + 1),
                    4 => DAYS.iter().position(|d| *d == lower).map(|p| p as u32),
                    _ => None,
                };
                let n = match named.or_else(|| bound.parse::<u32>().ok()) {
                    Some(n) => n,
                    None => {
                        return Some(format!(
                            "failed to parse int from {bound}: strconv.Atoi: parsing \"{bound}\": invalid syntax"
                        ));
                    }
                };
                if n < lo || n > hi {
                    return Some(format!("end of range ({n}) above maximum ({hi}): {range}"));
                }
            }
        }
    }
    None
}

impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        if obj.get("spec").is_some_and(Value::is_object) {
            default_path(obj, "spec.concurrencyPolicy", json!("Allow"));
            default_path(obj, "spec.suspend", json!(false));
            default_path(obj, "spec.successfulJobsHistoryLimit", json!(3));
            default_path(obj, "spec.failedJobsHistoryLimit", json!(1));
        }
        default_job_template(obj, "spec.jobTemplate.spec");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn name_rule(&self) -> crate::validation::NameRule {
        crate::validation::NameRule::Subdomain
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match str_at(obj, "spec.schedule").filter(|s| !s.is_empty()) {
            None => errors.push(FieldError::required("spec.schedule")),
            Some(s) => {
                if let Some(problem) = cron_problem(s) {
                    errors.push(FieldError::invalid("spec.schedule", json!(s), problem));
                }
            }
        }
        supported(obj, "spec.concurrencyPolicy", &["Allow", "Forbid", "Replace"], &mut errors);
        for field in [
            "spec.successfulJobsHistoryLimit",
            "spec.failedJobsHistoryLimit",
            "spec.startingDeadlineSeconds",
        ] {
            non_negative(obj, field, &mut errors);
        }
        // A CronJob's name, with the 11-character suffix of its jobs, must fit in a label.
        if let Some(name) = crate::object::name(obj).filter(|n| n.len() > 52) {
            errors.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "must be no more than 52 characters",
            ));
        }
        let template = "spec.jobTemplate.spec.template";
        if require_template(obj, template, &mut errors) {
            validate_template(obj, template, &["OnFailure", "Never"], &mut errors);
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        CRON_JOB_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let suspend = match path(obj, "spec.suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = since(str_at(obj, "status.lastScheduleTime"), ctx, "<none>");
        let (names, images) =
            container_cells(array_at(obj, "spec.jobTemplate.spec.template.spec.containers"));
        vec![
            json!(str_at(obj, "spec.schedule").unwrap_or_default()),
            json!(str_at(obj, "spec.timeZone").unwrap_or("<none>")),
            json!(suspend),
            json!(array_at(obj, "status.active").len()),
            json!(last),
            age(obj, ctx),
            names,
            images,
            json!(format_label_selector(path(obj, "spec.jobTemplate.spec.selector"))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
        })
    }

    #[test]
    fn jobs_default_generate_a_selector_and_validate() {
        let mut j = job();
        JobStrategy.default(&mut j);
        let once = j.clone();
        JobStrategy.default(&mut j);
        assert_eq!(j, once);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        JobStrategy.prepare_for_create(&mut j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {CONTROLLER_UID: "u-1"}}));
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "pi");
        assert!(JobStrategy.validate(&j).is_empty(), "{:?}", JobStrategy.validate(&j));
        let mut always = j.clone();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            JobStrategy.validate(&always)[0].to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
        let mut changed = j.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        let errors = JobStrategy.validate_update(&changed, &j);
        assert!(errors.iter().any(|e| e.field == "spec.template"));
    }

    #[test]
    fn job_row() {
        let ctx = TableContext { now: chrono::Utc::now() };
        let mut j = job();
        j["spec"]["completions"] = json!(3);
        j["status"] = json!({"succeeded": 3, "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:42Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let cells = JobStrategy.cells(&j, &ctx);
        assert_eq!(cells[..3], [json!("Complete"), json!("3/3"), json!("42s")]);
        assert_eq!(cells.len(), JOB_COLUMNS.len());
    }

    #[test]
    fn cron_schedules() {
        assert_eq!(cron_problem("*/5 * * * *"), None);
        assert_eq!(cron_problem("0 0 * * MON-FRI"), None);
        assert_eq!(cron_problem("@hourly"), None);
        assert_eq!(
            cron_problem("* * *").as_deref(),
            Some("expected exactly 5 fields, found 3: [* * *]")
        );
        assert!(cron_problem("61 * * * *").is_some());
        let mut cj = json!({"spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        CronJobStrategy.default(&mut cj);
        assert!(CronJobStrategy.validate(&cj).is_empty(), "{:?}", CronJobStrategy.validate(&cj));
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        let cells = CronJobStrategy.cells(&cj, &TableContext { now: chrono::Utc::now() });
        assert_eq!(
            cells[..5],
            [json!("*/1 * * * *"), json!("<none>"), json!("False"), json!(0), json!("<none>")]
        );
    }
}
