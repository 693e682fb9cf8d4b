// Types of fire-support.mjs, for the TypeScript benches (floor.ts).
import type pg from 'pg';
import type { PgBackground } from 'pg-background';

export function insertTable(url: string, table: string): Promise<{ setup: pg.Client; insert: string }>;
export function submitAll(bg: PgBackground, insert: string, count: number, first: number): Promise<void>;
export function submitDetached(bg: PgBackground, insert: string, count: number, first: number): Promise<void>;
