-- Migration 0102: which processor served which part of a call.
-- processor_parts lists each processor session in the order it started, with the seconds
-- after started_at it took over: 'speaqr@0.41 passthrough@5.02' (Speaqr failed mid-call and
-- the fallback served the rest). In the call service each entry carries its direction:
-- 'caller->callee:speaqr@2.10 callee->caller:speaqr@2.10 callee->caller:passthrough@9.30'.
-- processor keeps its meaning (speaqr when any part used Speaqr).
-- The role splits statements on ";" after dropping whole-line comments: inline comments hold none.

ALTER TABLE call_records
  ADD COLUMN processor_parts VARCHAR(255) NOT NULL DEFAULT '' AFTER processor;
