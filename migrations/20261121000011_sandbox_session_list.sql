-- GET /api/sessions pages newest first by (created_at, id); ended sessions stay listed, so the
-- table grows beyond the live cap.
CREATE INDEX sandbox_sessions_newest ON sandbox_sessions (created_at DESC, id DESC);
