-- The newest high watermark per source from runs before this logical date; the run itself is
-- excluded so that re-running a logical date pulls exactly what it pulled the first time.
SELECT w.source_name, w.high_watermark
FROM source_watermarks w
JOIN run_ledger r ON r.run_id = w.run_id AND r.status = 'success'
WHERE w.logical_date < :logical_date
  AND w.run_id <> :run_id
  AND w.high_watermark IS NOT NULL
  AND w.logical_date = (
      SELECT MAX(w2.logical_date) FROM source_watermarks w2
      JOIN run_ledger r2 ON r2.run_id = w2.run_id AND r2.status = 'success'
      WHERE w2.source_name = w.source_name AND w2.logical_date < :logical_date
        AND w2.run_id <> :run_id AND w2.high_watermark IS NOT NULL
  )
