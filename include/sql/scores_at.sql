-- Each golden lead's score and tier as of a run: its newest score_history row at (<=) or before (<)
-- the given run. score_history keeps a row only when a lead's score or tier moved, so the newest row wins.
SELECT h.golden_id, h.score, h.tier
FROM score_history h
JOIN (SELECT golden_id, MAX(run_id) AS last_run
      FROM score_history WHERE run_id {cmp} :run_id GROUP BY golden_id) l
  ON h.golden_id = l.golden_id AND h.run_id = l.last_run
