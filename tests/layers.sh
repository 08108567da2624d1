#!/bin/sh
# The layers stand on each other only downwards (docs/architecture.md,
# "Layers"): src/runtime includes from no other folder of src/, src/http
# from neither src/app nor src/clients, src/clients only from the public
# headers and the runtime's driver kit and codecs, and the http headers name none of the
# app's types (the app's per-request state is rq->app_data, opaque there).
#   tests/layers.sh SOURCE_DIR
cd "${1:-.}" || exit 2
bad=0
say() { echo "layers: $1"; bad=1; }
out=$(grep -rn '#include "\(http\|app\|clients\)/' src/runtime) && say "src/runtime includes from above:
$out"
out=$(grep -rn '#include "\(app\|clients\)/' src/http) && say "src/http includes from above:
$out"
out=$(grep -nwE 'vial_app|vial_bp|vial_rule|vial_handler|vial_form|vial_json|vial_json_doc|vial_session|vial_g|vial_cookies|vial_ws|vial_ws_handler|vial_ws_group|vial_req_state|finalize|lifecycle' src/http/*.h) &&
    say "src/http headers name the app's concepts:
$out"
# The clients use the public API and the runtime's driver kit and codecs,
# nothing else of vial's internals.
out=$(grep -n '#include "' src/clients/*.c | grep -v '#include "\(vial\.h\|vial/[a-z_]*\.h\|runtime/driver\.h\|runtime/codec\.h\|runtime/numfmt\.h\|runtime/ascii\.h\|runtime/log\.h\)"') &&
    say "src/clients reach past the public API and the driver kit:
$out"
[ $bad = 0 ] && echo "layers: ok"
exit $bad
