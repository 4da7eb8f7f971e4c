-- The job queue: every piece of background work is one row of jobs.
--
-- States (see src/queue.h):
--   scheduled  waiting for run_at (a delay, or a deferral for a rate limit)
--   ready      due: workers claim these
--   running    claimed by a worker (owner, lease_token, lease_expires_at)
--   failed     an attempt failed; waiting for run_at to try again
--   succeeded, dead, cancelled  finished (finished_at is set)
--
-- Only ready rows are in the claim's index range: the scheduler promotes
-- scheduled and failed rows to ready when run_at comes, so a claim never
-- scans future work.  The claim reads ix_jobs_claim in exactly its order
-- (queue, state, priority, id) and every write goes by primary key.
CREATE TABLE IF NOT EXISTS jobs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    queue VARCHAR(32) NOT NULL,
    kind VARCHAR(64) NOT NULL,
    state ENUM('scheduled','ready','running','failed','succeeded','dead','cancelled') NOT NULL,
    priority SMALLINT NOT NULL DEFAULT 0,          -- smaller runs first
    run_at DATETIME(3) NOT NULL,
    attempts INT UNSIGNED NOT NULL DEFAULT 0,      -- attempts spent so far
    max_attempts INT UNSIGNED NOT NULL,
    owner BIGINT UNSIGNED NULL,                    -- workers.id of the claimant
    lease_token BIGINT UNSIGNED NULL,              -- fresh for every claim
    lease_expires_at DATETIME(3) NULL,
    unique_key VARCHAR(191) NULL,                  -- the job's logical key, kept
    active_key VARCHAR(191) NULL,                  -- = unique_key until finished
    payload TEXT NOT NULL,                         -- JSON object
    last_error VARCHAR(1024) NULL,
    last_error_class ENUM('transient','rate_limited','auth','permanent','lost','released') NULL,
    progress_done BIGINT UNSIGNED NULL,
    progress_total BIGINT UNSIGNED NULL,
    user_id BIGINT UNSIGNED NULL,                  -- whose work; NULL = the system's
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    claimed_at DATETIME(3) NULL,                   -- start of the latest attempt
    finished_at DATETIME(3) NULL,
    UNIQUE KEY ix_jobs_active_key (active_key),
    KEY ix_jobs_claim (queue, state, priority, id),
    KEY ix_jobs_due (state, run_at, id),
    KEY ix_jobs_finished (finished_at),
    KEY ix_jobs_user (user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Attempts that did not succeed, for GET /jobs/{id}: the successful one
-- is the job row itself.  Written in the same transaction as the job's
-- change of state, and deleted with the job.
CREATE TABLE IF NOT EXISTS job_attempts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    job_id BIGINT UNSIGNED NOT NULL,
    attempt INT UNSIGNED NOT NULL,                 -- deferrals share an attempt
    at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    outcome ENUM('failed','deferred','lost','released','dead') NOT NULL,
    error_class ENUM('transient','rate_limited','auth','permanent','lost','released') NOT NULL,
    error VARCHAR(1024) NOT NULL DEFAULT '',
    worker_id BIGINT UNSIGNED NULL,
    worker_host VARCHAR(255) NOT NULL DEFAULT '',
    worker_pid INT UNSIGNED NULL,
    started_at DATETIME(3) NULL,
    KEY ix_job_attempts_job (job_id, id),
    KEY ix_job_attempts_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Every process of every worker supervisor, on every host.  The
-- supervisor writes last_heartbeat_at for itself and for each child whose
-- own liveness tick is fresh, so a hung or silently dead process stops
-- heartbeating and shows up as stale.
CREATE TABLE IF NOT EXISTS workers (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    supervisor_id BIGINT UNSIGNED NULL,            -- NULL for a supervisor
    role ENUM('supervisor','scheduler','worker') NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INT UNSIGNED NOT NULL,
    queues VARCHAR(255) NOT NULL DEFAULT '',
    state ENUM('running','draining','stopped') NOT NULL DEFAULT 'running',
    version VARCHAR(32) NOT NULL DEFAULT '',
    started_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_heartbeat_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    stopped_at DATETIME(3) NULL,
    jobs_done BIGINT UNSIGNED NOT NULL DEFAULT 0,
    current_job_id BIGINT UNSIGNED NULL,
    metrics MEDIUMTEXT NULL,                       -- a supervisor's counters, JSON
    KEY ix_workers_host (host, state),
    KEY ix_workers_heartbeat (last_heartbeat_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Recurring work: one row per task, with its next due time.  A scheduler
-- moves next_run_at forward with a compare-and-set in the same
-- transaction that enqueues the job, whose unique key names the task and
-- the due time: two schedulers on two hosts cannot both enqueue one run.
CREATE TABLE IF NOT EXISTS recurring_tasks (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    kind VARCHAR(64) NOT NULL,
    queue VARCHAR(32) NOT NULL,
    interval_ms BIGINT UNSIGNED NOT NULL,
    payload TEXT NOT NULL,
    enabled TINYINT(1) NOT NULL DEFAULT 1,
    next_run_at DATETIME(3) NOT NULL,
    last_enqueued_at DATETIME(3) NULL,
    last_job_id BIGINT UNSIGNED NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Events for operators and, with the alerting issue, for delivery
-- (Slack, email, SMS, webhooks).  A job reaching the dead-letter queue
-- records one here in the same transaction.
CREATE TABLE IF NOT EXISTS alert_events (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    kind VARCHAR(64) NOT NULL,                     -- e.g. job.dead
    severity ENUM('info','warning','critical') NOT NULL,
    subject_type VARCHAR(32) NOT NULL DEFAULT '',
    subject_id BIGINT UNSIGNED NULL,
    user_id BIGINT UNSIGNED NULL,
    message VARCHAR(1024) NOT NULL,
    delivered_at DATETIME(3) NULL,
    KEY ix_alert_events_pending (delivered_at, id),
    KEY ix_alert_events_user (user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Views for the mysql client (docs/OPERATIONS.md shows them in use).

-- Unfinished work by queue and state, with the age of the oldest due job.
CREATE OR REPLACE VIEW queue_depth AS
SELECT queue, state, COUNT(*) AS jobs,
       ROUND(GREATEST(0, TIMESTAMPDIFF(MICROSECOND, MIN(run_at), NOW(3))) / 1e6, 3) AS oldest_due_s
FROM jobs
WHERE state IN ('scheduled','ready','running','failed','dead')
GROUP BY queue, state;

-- The dead-letter queue.
CREATE OR REPLACE VIEW dead_jobs AS
SELECT id, queue, kind, attempts, max_attempts, last_error_class, last_error,
       user_id, created_at, finished_at AS died_at
FROM jobs WHERE state = 'dead';

-- What runs now, where, and how long its lease has left.
CREATE OR REPLACE VIEW running_jobs AS
SELECT j.id, j.queue, j.kind, j.attempts, w.host, w.pid, j.claimed_at,
       ROUND(TIMESTAMPDIFF(MICROSECOND, NOW(3), j.lease_expires_at) / 1e6, 3) AS lease_left_s,
       j.progress_done, j.progress_total
FROM jobs j LEFT JOIN workers w ON w.id = j.owner
WHERE j.state = 'running';

-- Failed attempts in the last 24 hours, newest first.
CREATE OR REPLACE VIEW recent_failures AS
SELECT a.at, a.job_id, j.queue, j.kind, a.attempt, a.outcome, a.error_class, a.error,
       a.worker_host, a.worker_pid
FROM job_attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.at > NOW(3) - INTERVAL 1 DAY
ORDER BY a.at DESC;

-- Processes of every supervisor, with seconds since their last heartbeat.
CREATE OR REPLACE VIEW worker_status AS
SELECT id, supervisor_id, role, host, pid, queues, state, started_at,
       ROUND(TIMESTAMPDIFF(MICROSECOND, last_heartbeat_at, NOW(3)) / 1e6, 3) AS heartbeat_age_s,
       jobs_done, current_job_id
FROM workers WHERE state <> 'stopped';
