-- release_unique: release a uniqueness lock if the given task still holds it (used after the
-- recoverer archived a cancelled task, whose lock key only the caller can name).
--
-- KEYS[1] unique  the uniqueness lock
-- ARGV[1] id
-- Returns: 1
--@include unique
local unique = KEYS[1]

release_unique(unique, ARGV[1])
return 1
