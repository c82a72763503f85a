-- The lease owner (replica) that was last refused the lock while another replica held it.
-- A holder hands a released lock to a waiter of its own replica only while no other replica
-- asked for it, so that one replica's waiters cannot keep a lock from the others'.
ALTER TABLE resource_locks ADD COLUMN wanted_by text;
