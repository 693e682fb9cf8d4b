// What the fire-and-forget scripts share (ab-dist, profile-fire, tag-ab): a table of single-row
// INSERTs on DATABASE_URL, and the library's round of them, every task submitted at once, then
// waited for (the floor's `lib` side, bench/floor.ts).
import pg from 'pg';

/**
 * `table` (id int, payload text) created if missing and emptied; resolves with a connected setup
 * client (the caller ends it) and the INSERT of one row, $1 the id, $2 the payload.
 */
export async function insertTable(url, table) {
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query(`CREATE TABLE IF NOT EXISTS ${table} (id int NOT NULL, payload text NOT NULL)`);
  await setup.query(`TRUNCATE ${table}`);
  return { setup, insert: `INSERT INTO ${table} (id, payload) VALUES ($1, $2)` };
}

/** `count` INSERTs of ids from `first` through `bg`, every one submitted at once, then waited for. */
export async function submitAll(bg, insert, count, first) {
  const handles = await Promise.all(Array.from({ length: count }, (_, i) => bg.submit({ text: insert, values: [first + i, 'row'] })));
  await Promise.all(handles.map((h) => bg.wait(h)));
}

/**
 * `count` INSERTs of ids from `first` through `bg` as the fire-and-forget: every one
 * submitted, then all detached at once (nobody reads or waits for them; detached workers are
 * not retained); resolves when the last has finished (the instance's 'finished' events).
 */
export async function submitDetached(bg, insert, count, first) {
  let left = count;
  const done = new Promise((resolve) => {
    const onFinished = () => {
      if (--left > 0) return;
      bg.off('finished', onFinished);
      resolve();
    };
    bg.on('finished', onFinished);
  });
  for (let i = 0; i < count; i++) void bg.submit({ text: insert, values: [first + i, 'row'] });
  await bg.detachAll();
  await done;
}
