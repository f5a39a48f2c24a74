"""At most five active variations per template, enforced by the database under concurrent
edits (the admin's formset checks the submitted set, but two saves at once each see only their
own rows). A deferred constraint trigger runs at commit, so a swap inside one save (one
variation off, another on) is judged on the final state; it first locks the template row, so
two transactions adding variations to one template are counted one after the other: in READ
COMMITTED each statement of the function sees what committed before it, the other's rows
included."""
from django.db import migrations

from apps.billing.constants import MAX_ACTIVE_VARIATIONS

CREATE = f"""
CREATE FUNCTION billing_variation_active_limit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  active integer;
BEGIN
  IF NOT NEW.is_active THEN
    RETURN NULL;
  END IF;
  PERFORM 1 FROM billing_billingtemplate WHERE id = NEW.template_id FOR NO KEY UPDATE;
  SELECT count(*) INTO active FROM billing_billingtemplatevariation
   WHERE template_id = NEW.template_id AND is_active;
  IF active > {MAX_ACTIVE_VARIATIONS} THEN
    RAISE EXCEPTION 'A template can have at most {MAX_ACTIVE_VARIATIONS} active variations.'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'billing_variation_active_limit';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER billing_variation_active_limit
  AFTER INSERT OR UPDATE OF is_active, template_id ON billing_billingtemplatevariation
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_variation_active_limit();
"""
DROP = """
DROP TRIGGER IF EXISTS billing_variation_active_limit ON billing_billingtemplatevariation;
DROP FUNCTION IF EXISTS billing_variation_active_limit();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0010_suppressed_phone_hash"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
