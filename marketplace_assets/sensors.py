"""Sensors. `marketplace_apps_sensor` keeps the app dimension of per-app reports in step with listings;
`current_licenses_automation` refreshes licenses/current after the license history."""

import dagster as dg

from marketplace_assets.partitions import APPS
from marketplace_assets.settings import sensor_interval_seconds
from marketplace_assets.warehouse import TableNotFoundError, TableRef, WarehouseError, WarehouseResource

LISTINGS = TableRef("listings", "apps")


@dg.sensor(
    name="marketplace_apps_sensor",
    description=(
        "Adds every app in the listings/apps table as a partition of the per-app reports "
        "(search/keywords_by_app). Apps are never removed, so an app that leaves the listing keeps its "
        f"history. Looks every {sensor_interval_seconds(60)} s, so apps are added that long after "
        "listings/apps is materialized at the latest."
    ),
    # MARKETPLACE_SENSOR_INTERVAL replaces the minute (tests tick it in seconds).
    minimum_interval_seconds=sensor_interval_seconds(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def marketplace_apps_sensor(
    context: dg.SensorEvaluationContext, warehouse_store: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    try:
        # A short lock wait: a tick must end well inside its 60 s limit; the next tick tries again.
        listings = warehouse_store.open(lock_timeout=10).read(LISTINGS)
    except TableNotFoundError:
        return dg.SkipReason("listings/apps has not been materialized yet; materialize it to add the apps")
    except WarehouseError as exc:
        return dg.SkipReason(f"the warehouse is busy ({exc}); trying again next tick")
    listed = set(listings["product_id"].drop_nulls().to_list()) if "product_id" in listings.columns else set()
    known = set(context.instance.get_dynamic_partitions(APPS.name or ""))
    new = sorted(listed - known)
    if not new:
        return dg.SkipReason(f"all {len(listed)} listed apps are partitions already")
    context.log.info(f"adding {len(new)} app(s) to {APPS.name}: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[APPS.build_add_request(new)])


# licenses/current has an eager automation condition: it runs after every licenses/licenses
# materialization. Dagster evaluates automation conditions in a sensor, and the default one it would make
# ships stopped, so the refresh would silently never happen. This one covers just that asset, ships
# running (it only acts after a licenses/licenses run someone launched) and shows under Automation.
CURRENT_LICENSES = dg.AssetKey(["licenses", "current"])
current_licenses_automation = dg.AutomationConditionSensorDefinition(
    name="current_licenses_after_license_history",
    target=dg.AssetSelection.assets(CURRENT_LICENSES),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval_seconds(30),
    description="Materializes licenses/current after each licenses/licenses materialization (its eager "
    "automation condition). On by default; switch it off here to stop the refresh.",
)
