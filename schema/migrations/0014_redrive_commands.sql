-- Redrive (POST /api/workflows/{wf}/runs/{run}/redrive, docs/workflow-maintenance.md):
-- a redrive is a workflow_commands row like repair or archive, so its command type joins
-- the CHECK on command_type.
--
-- compatible: the CHECK is replaced by a wider one under the same name; every command
-- type the previous release writes stays allowed, and it reads a 'redrive' row only as
-- any command (a history export lists it; its request-id lookups name their own types).
ALTER TABLE workflow_commands
    DROP CONSTRAINT workflow_commands_command_type_check,
    ADD CONSTRAINT workflow_commands_command_type_check
        CHECK (command_type IN ('start', 'signal', 'update', 'repair', 'cancel', 'terminate',
                                'archive', 'redrive'));
