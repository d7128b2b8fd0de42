// Package all registers every jobx language processor:
//
//	import _ "github.com/jobx/jobx/processors/all"
package all

import (
	_ "github.com/jobx/jobx/processors/generic"
	_ "github.com/jobx/jobx/processors/node"
	_ "github.com/jobx/jobx/processors/python"
	_ "github.com/jobx/jobx/processors/shell"
)
