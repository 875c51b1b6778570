import '@fontsource/inter/latin-400.css'
import '@fontsource/inter/latin-600.css'
import './styles.css'
import { render } from 'preact'
import { App } from './App'

render(<App />, document.getElementById('app') as HTMLElement)
