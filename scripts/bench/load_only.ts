/*T:735 A floor for the launch benchmark: the launcher's whole module graph
 * loaded (everything cli.ts imports), and nothing run. :*/
import "../../cli.ts";
