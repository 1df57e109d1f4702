// The retention part of cluster.yml beyond the per-category day counts:
// the policies that act on raw usage records, the legal holds that block
// them, the schedule and where archived and exported records go. Strict
// like the rest of the schema: an unknown key, a time policy without
// max_age_days, a compress_level on a delete policy are errors naming the
// offender. See docs/configuration.md (retention).

import { z } from 'zod';

export const RETENTION_CATEGORIES = ['raw_usage'] as const;
export const POLICY_TYPES = ['time', 'size', 'count', 'conditional'] as const;
export const POLICY_ACTIONS = ['delete', 'archive', 'compress', 'aggregate', 'export'] as const;
export const EXPORT_FORMATS = ['jsonl', 'csv'] as const;
export const RECORD_STATUS_VALUES = ['success', 'error', 'timeout', 'cancelled'] as const;

export type PolicyType = (typeof POLICY_TYPES)[number];
export type PolicyAction = (typeof POLICY_ACTIONS)[number];
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface PolicyWhere {
  user_id?: string | undefined;
  provider?: string | undefined;
  model?: string | undefined;
  status?: (typeof RECORD_STATUS_VALUES)[number] | undefined;
  operation?: string | undefined;
}

export interface RetentionPolicy {
  name: string;
  category: 'raw_usage';
  type: PolicyType;
  action: PolicyAction;
  max_age_days?: number | undefined;
  max_bytes?: number | undefined;
  max_records?: number | undefined;
  where?: PolicyWhere | undefined;
  export_format?: ExportFormat | undefined;
  compress_level?: number | undefined;
}

export interface LegalHold {
  id: string;
  user_id?: string | undefined;
  /** Epoch ms, inclusive. */
  from?: number | undefined;
  /** Epoch ms, exclusive. */
  to?: number | undefined;
  reason: string;
}

const text = (max: number) => z.string().min(1, 'must not be empty').max(max, `must be at most ${max} characters`);

/** Epoch ms or an ISO 8601 string, as a whole number of epoch ms. */
const instant = z.union([z.number().int('must be whole epoch milliseconds').min(0), z.string().max(40)], { error: 'must be epoch milliseconds or an ISO 8601 string' }).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    ctx.addIssue({ code: 'custom', message: 'must be epoch milliseconds or an ISO 8601 string' });
    return z.NEVER;
  }
  return ms;
});

const whereSchema = z
  .object({
    user_id: text(256).optional(),
    provider: text(128).transform((value) => value.toLowerCase()).optional(),
    model: text(128).optional(),
    status: z.enum(RECORD_STATUS_VALUES, { error: `must be one of ${RECORD_STATUS_VALUES.join(', ')}` }).optional(),
    operation: text(128).optional(),
  })
  .strict()
  .refine((where) => Object.keys(where).length > 0, 'must name at least one of user_id, provider, model, status, operation');

export const policySchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
    category: z.enum(RETENTION_CATEGORIES, {
      error: 'must be raw_usage (the other categories are governed by their *_days keys: aggregated_metrics_days, analytics_insights_days, audit_logs_days, backups_days, temp_days)',
    }),
    type: z.enum(POLICY_TYPES, { error: `must be one of ${POLICY_TYPES.join(', ')}` }),
    action: z.enum(POLICY_ACTIONS, { error: `must be one of ${POLICY_ACTIONS.join(', ')}` }),
    max_age_days: z.number().int('must be a whole number').min(1, 'must be at least 1').max(36_500, 'must be at most 36500').optional(),
    max_bytes: z.number().int('must be a whole number').min(1, 'must be at least 1').max(2 ** 50).optional(),
    max_records: z.number().int('must be a whole number').min(0, 'must not be negative').max(2 ** 40).optional(),
    where: whereSchema.optional(),
    export_format: z.enum(EXPORT_FORMATS, { error: 'must be jsonl or csv' }).optional(),
    compress_level: z.number().int('must be a whole number').min(1, 'must be at least 1').max(9, 'must be at most 9').optional(),
  })
  .strict()
  .superRefine((policy, ctx) => {
    const need = (key: keyof RetentionPolicy, why: string) => {
      if (policy[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: `is required for ${why}` });
    };
    const refuse = (key: keyof RetentionPolicy, why: string) => {
      if (policy[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `does not apply to ${why}` });
    };
    if (policy.type === 'time') need('max_age_days', 'a time policy');
    if (policy.type === 'size') need('max_bytes', 'a size policy');
    if (policy.type === 'count') need('max_records', 'a count policy');
    if (policy.type === 'conditional') need('where', 'a conditional policy (which records it removes)');
    if (policy.type !== 'size') refuse('max_bytes', `a ${policy.type} policy`);
    if (policy.type !== 'count') refuse('max_records', `a ${policy.type} policy`);
    if (policy.type !== 'conditional') refuse('where', `a ${policy.type} policy (use type: conditional)`);
    if (policy.type === 'size' || policy.type === 'count') refuse('max_age_days', `a ${policy.type} policy`);
    if (policy.action !== 'export') refuse('export_format', `action ${policy.action}`);
    if (policy.action !== 'compress') refuse('compress_level', `action ${policy.action}`);
    if (policy.action === 'compress' && policy.type !== 'time' && policy.type !== 'conditional') {
      ctx.addIssue({ code: 'custom', path: ['action'], message: 'compress works with time and conditional policies only' });
    }
  });

export const legalHoldSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'"),
    user_id: text(256).optional(),
    from: instant.optional(),
    to: instant.optional(),
    reason: text(1024),
  })
  .strict()
  .refine((hold) => hold.from === undefined || hold.to === undefined || hold.from < hold.to, { message: 'must be before to', path: ['from'] });

/** A refinement refusing the second item of a list with the same key, at its index. */
export const uniqueBy =
  <T>(key: (item: T) => string, what: string) =>
  (items: T[], ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      const value = key(item);
      if (seen.has(value)) ctx.addIssue({ code: 'custom', path: [index], message: `${what} ${value} appears twice` });
      seen.add(value);
    });
  };

/** The keys added to `retention` in src/config/schema.ts. */
export const retentionPolicyKeys = {
  policies: z.array(policySchema).max(64, 'must list at most 64 policies').superRefine(uniqueBy((policy) => policy.name, 'policy name')).optional(),
  legal_holds: z.array(legalHoldSchema).max(10_000, 'must list at most 10000 holds').superRefine(uniqueBy((hold) => hold.id, 'hold id')).default([]),
  schedule_interval_hours: z.number().min(0, 'must not be negative').max(24 * 365, 'must be at most 8760').default(24),
  archive_dir: z.string().min(1).default('./archive'),
  export_dir: z.string().min(1).default('./exports'),
};

/** The policies in force: the configured ones, or (none configured) raw usage rolled up after raw_usage_days. */
export function effectivePolicies(retention: { policies?: RetentionPolicy[] | undefined; raw_usage_days: number }): RetentionPolicy[] {
  if (retention.policies !== undefined) return retention.policies;
  return [{ name: 'raw_usage-aggregate', category: 'raw_usage', type: 'time', action: 'aggregate', max_age_days: retention.raw_usage_days }];
}
