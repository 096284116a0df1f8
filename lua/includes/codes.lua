-- Failure codes returned by every script; rq_sched/errors.py maps them to exceptions.
local CONFLICT = -1      -- task id used by a live or retained task
local DUPLICATE = -2     -- uniqueness lock held by another task
local TICK_TAKEN = -3    -- guard already at or past this value
local NOT_ACTIVE = -4    -- the caller's lease is gone or stale (recovered, re-leased, finished)
local PAUSED = -5        -- queue paused
local TASK_ACTIVE = -7   -- the action does not apply to an active task
local NOT_FOUND = -8     -- no such task
local WRONG_STATE = -9   -- the action does not apply in the task's current state
